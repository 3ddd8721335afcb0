-- The quick-start saga: an order placed on demo.orders reserves stock,
-- charges the payment and ships. Payment is declined for the test card
-- 4000000000000002 and for amounts over 1000; then the stock reservation
-- is released again. The functions are the entry points of orders.so
-- (workers/examples/orders.c). Follow an order with
--   weft sagas list
--   weft sagas show ID
-- or read the transitions on demo.orders.events.
INSERT INTO weft.functions (name, entry, symbol, timeout_ms, pool_size)
VALUES ('reserve-stock', 'orders.so', 'reserve_stock', 5000, 1),
       ('release-stock', 'orders.so', 'release_stock', 5000, 1),
       ('charge-payment', 'orders.so', 'charge_payment', 5000, 1),
       ('refund-payment', 'orders.so', 'refund_payment', 5000, 1),
       ('ship-order', 'orders.so', 'ship_order', 5000, 1);

INSERT INTO weft.sagas (name, step_topic, event_topic, dead_letter_topic, deadline_ms)
VALUES ('order', 'demo.orders.steps', 'demo.orders.events', 'demo.orders.dlq', 60000);

INSERT INTO weft.saga_steps (saga, position, name, function, compensation, max_attempts)
VALUES ('order', 1, 'reserve', 'reserve-stock', 'release-stock', 3),
       ('order', 2, 'charge', 'charge-payment', 'refund-payment', 3),
       ('order', 3, 'ship', 'ship-order', NULL, 3);

INSERT INTO weft.triggers (name, topic, event_type, saga, dead_letter_topic)
VALUES ('place-order', 'demo.orders', 'demo.order.placed', 'order', 'demo.orders.dlq');
