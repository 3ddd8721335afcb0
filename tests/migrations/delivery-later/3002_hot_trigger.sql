-- Added while the dispatcher runs: must start firing without a restart.
INSERT INTO weft.triggers (name, topic, function, result_topic, dead_letter_topic)
VALUES ('d-hot', 'd.fan', 'd-upper', 'd.hot.out', 'd.fan.dlq');
