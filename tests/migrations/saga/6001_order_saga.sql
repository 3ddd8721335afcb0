-- The order saga of the README, for the saga integration tests. The
-- functions are the entry points of orders.so (workers/examples/orders.c).
INSERT INTO weft.functions (name, entry, symbol, timeout_ms, pool_size)
VALUES ('reserve-stock', 'orders.so', 'reserve_stock', 4000, 2),
       ('release-stock', 'orders.so', 'release_stock', 4000, 1),
       ('charge-payment', 'orders.so', 'charge_payment', 4000, 2),
       ('refund-payment', 'orders.so', 'refund_payment', 4000, 1),
       ('ship-order', 'orders.so', 'ship_order', 4000, 2);

INSERT INTO weft.sagas (name, step_topic, event_topic, dead_letter_topic, deadline_ms)
VALUES ('order', 'order.steps', 'order.events', 'order.dlq', 60000),
       ('quick-order', 'quick.steps', 'quick.events', 'order.dlq', 1500);

INSERT INTO weft.saga_steps (saga, position, name, function, compensation, max_attempts,
                             backoff_initial_ms, backoff_max_ms)
VALUES ('order', 1, 'reserve', 'reserve-stock', 'release-stock', 2, 50, 200),
       ('order', 2, 'charge', 'charge-payment', 'refund-payment', 2, 50, 200),
       ('order', 3, 'ship', 'ship-order', NULL, 2, 50, 200),
       ('quick-order', 1, 'reserve', 'reserve-stock', 'release-stock', 2, 50, 200),
       ('quick-order', 2, 'charge', 'charge-payment', 'refund-payment', 2, 50, 200);

INSERT INTO weft.triggers (name, topic, saga, dead_letter_topic)
VALUES ('place-order', 'orders', 'order', 'orders.dlq'),
       ('place-quick-order', 'quick.orders', 'quick-order', 'orders.dlq');
