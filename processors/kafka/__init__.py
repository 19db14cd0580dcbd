"""The command side of taskledger on Kafka, one concern per module.

- ``messages``: a :class:`~processors.command_core.CommandRequest` as it travels on
  ``<prefix>.commands``, and :class:`~processors.kafka.messages.PoisonCommand`;
- ``publisher``: puts commands on that topic, in their task's partition;
- ``planner``: one poll of a partition decided through the command core into one plan;
- ``processor``: consumes the commands, commits each plan as one transaction, recovers;
- ``leadership``: which process leads (the owner of partition 0);
- ``bus``: runs commands through the processors for everyone else, as the embedded commands would;
- ``replies``: a command's reply, as it travels on ``<prefix>.replies``;
- ``status_topic``: the tasks' status documents on ``<prefix>.status``, fanned out;
- ``projection_workers``: the read models, folded by a consumer group's members.
"""
