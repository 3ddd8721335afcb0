/*
 * test_frame.c - the worker's frame reader (workers/proto/frame.c): frames sent
 * back to back come out one by one, a frame split across writes is put
 * together, EOF is told from a truncated frame, pipes work as well as
 * sockets, and a reader waiting for its next frame is woken by input only.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "frame.h"

static void put_frame(int fd, const char *payload)
{
    size_t n = strlen(payload);
    uint8_t hdr[WEFT_FRAME_HEADER] = {(uint8_t)(n >> 24), (uint8_t)(n >> 16), (uint8_t)(n >> 8),
                                      (uint8_t)n};
    assert_int_equal(weft_frame_write_all(fd, hdr, sizeof(hdr)), 0);
    assert_int_equal(weft_frame_write_all(fd, (const uint8_t *)payload, n), 0);
}

/* The next frame's payload as a string ("" at EOF). */
static char *next(int fd, weft_buf_t *b, size_t *off, int *rc)
{
    static char out[256];
    size_t poff = 0, plen = 0;
    *rc = weft_frame_next(fd, b, off, 1024, &poff, &plen);
    out[0] = '\0';
    if (*rc == 1) {
        assert_true(plen < sizeof(out));
        memcpy(out, b->data + poff, plen);
        out[plen] = '\0';
    }
    return out;
}

static void frames_in_order(int rd, int wr)
{
    put_frame(wr, "one");
    put_frame(wr, "");
    put_frame(wr, "three");
    /* A frame in two writes: the reader must wait for its second half. */
    assert_int_equal(weft_frame_write_all(wr, (const uint8_t *)"\0\0\0\4fo", 6), 0);
    assert_int_equal(weft_frame_write_all(wr, (const uint8_t *)"ur", 2), 0);
    close(wr);
    weft_buf_t b = {0};
    size_t off = 0;
    int rc;
    assert_string_equal(next(rd, &b, &off, &rc), "one");
    assert_string_equal(next(rd, &b, &off, &rc), "");
    assert_int_equal(rc, 1);
    assert_string_equal(next(rd, &b, &off, &rc), "three");
    assert_string_equal(next(rd, &b, &off, &rc), "four");
    next(rd, &b, &off, &rc);
    assert_int_equal(rc, 0); /* EOF at a frame boundary */
    weft_buf_free(&b);
    close(rd);
}

static void test_frames_from_a_socket(void **state)
{
    (void)state;
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    frames_in_order(sv[0], sv[1]);
}

static void test_frames_from_a_pipe(void **state)
{
    (void)state;
    int p[2];
    assert_int_equal(pipe(p), 0);
    frames_in_order(p[0], p[1]);
}

static void test_eof_inside_a_frame_is_eproto(void **state)
{
    (void)state;
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    assert_int_equal(weft_frame_write_all(sv[1], (const uint8_t *)"\0\0\0\11abc", 7), 0);
    close(sv[1]);
    weft_buf_t b = {0};
    size_t off = 0;
    int rc;
    next(sv[0], &b, &off, &rc);
    assert_int_equal(rc, -1);
    assert_int_equal(errno, EPROTO);
    weft_buf_free(&b);
    close(sv[0]);
}

static void sleep_us(long us)
{
    struct timespec ts = {0, us * 1000};
    nanosleep(&ts, NULL);
}

/* A worker sends its results and waits for its next Invoke; the
 * dispatcher reads the results, then sends. Blocked in read(), the worker
 * is woken each time the dispatcher's reads free space it had sent into
 * (16 wakeups a round here), though there is nothing for it to read. */
static void test_a_waiting_reader_is_woken_by_input_only(void **state)
{
    (void)state;
    enum { ROUNDS = 40, RESULTS = 16 };
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        close(sv[0]);
        weft_buf_t b = {0};
        size_t off = 0, poff, plen;
        struct rusage before, after;
        getrusage(RUSAGE_SELF, &before);
        for (int r = 0; r < ROUNDS; r++) {
            for (int i = 0; i < RESULTS; i++)
                if (weft_frame_write_all(sv[1], (const uint8_t *)"\0\0\0\1r", 5) != 0)
                    _exit(255);
            if (weft_frame_next(sv[1], &b, &off, 1024, &poff, &plen) != 1)
                _exit(254);
        }
        getrusage(RUSAGE_SELF, &after);
        long woken = after.ru_nvcsw - before.ru_nvcsw;
        _exit(woken > 250 ? 250 : (int)woken); /* 254, 255: errors */
    }
    close(sv[1]);
    for (int r = 0; r < ROUNDS; r++) {
        for (int i = 0; i < RESULTS; i++) {
            uint8_t one[5];
            size_t got = 0;
            while (got < sizeof(one)) {
                ssize_t n = read(sv[0], one + got, sizeof(one) - got);
                assert_true(n > 0);
                got += (size_t)n;
            }
            sleep_us(100); /* the worker goes back to sleep meanwhile */
        }
        assert_int_equal(weft_frame_write_all(sv[0], (const uint8_t *)"\0\0\0\1i", 5), 0);
    }
    int st;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    assert_true(WIFEXITED(st));
    int woken = WEXITSTATUS(st);
    print_message("reader woken %d times in %d rounds\n", woken, ROUNDS);
    /* One wakeup a round for its Invoke, and slack for the scheduler:
     * blocked in read() it was ~ROUNDS * RESULTS. */
    assert_true(woken >= ROUNDS / 2);
    assert_true(woken <= 2 * ROUNDS);
    close(sv[0]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_frames_from_a_socket),
        cmocka_unit_test(test_frames_from_a_pipe),
        cmocka_unit_test(test_eof_inside_a_frame_is_eproto),
        cmocka_unit_test(test_a_waiting_reader_is_woken_by_input_only),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
