"""Session fixtures shared by every test module: the real emulators, started once."""

pytest_plugins = [
    "tests.support.edge_fixture",
    "tests.support.firestore_emulator",
    "tests.support.gcs_emulator",
    "tests.support.kafka_session",
]
