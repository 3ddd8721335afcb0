/*
 * job.h - the decisions of the job state machine that need nothing but
 * numbers: the backoff before a retry, what a claim's answer makes of a
 * job, and whether a failed attempt is retried or dead-lettered.
 *
 * Pure functions: no broker, no database, no clock, no random numbers
 * (the caller passes them in), so tests/test_job.c checks them directly.
 * The queues, the active-key table and the ordering chains that act on
 * these decisions are in job.c (declared in internal.h).
 */
#ifndef WEFT_JOB_H
#define WEFT_JOB_H

#include "ledger.h"

/* Exponential backoff with jitter: b = initial * multiplier^(attempts-1),
 * capped at max_ms, and the delay is b * (1 - jitter * u) for u in [0, 1]
 * (the caller draws u), so it lies in [b * (1 - jitter), b]. */
int weft_job_backoff_ms(int initial_ms, double multiplier, int max_ms, double jitter, int attempts,
                        double u);

/* What a job does after its key's claim was answered. */
typedef enum {
    WEFT_JOB_RUN,            /* invoke the function */
    WEFT_JOB_START_SAGA,     /* a saga's start: record it as completed */
    WEFT_JOB_FAIL,           /* dead-letter it now (reason says why) */
    WEFT_JOB_REEMIT,         /* done before: produce the stored result again */
    WEFT_JOB_DROP,           /* dropped before: terminal, nothing to produce */
    WEFT_JOB_DROP_STEP,      /* dropped saga step: its saga still moves */
    WEFT_JOB_REPUBLISH_DEAD, /* dead-lettered before: produce the dead letter again */
    WEFT_JOB_WAIT,           /* another owner holds the key: ask again later */
} weft_job_next_t;

/* What the claim said and what is known of the job when it arrives. */
typedef struct weft_job_claim {
    weft_claim_kind_t kind;
    int attempts;       /* the ledger's count of attempts that ran (not this one) */
    int max_attempts;   /* the trigger's */
    int takeovers;      /* the ledger's count of claims taken from dead owners, this one
                         * included */
    int max_takeovers;  /* dispatcher.max_takeovers */
    int bad_input;      /* the message cannot be run (malformed, oversized) */
    int expired;        /* older than the trigger's max_event_age_ms */
    int saga_start;     /* the trigger starts a saga (runs no function) */
    int saga_step;      /* the trigger is a saga's step */
    int instance_valid; /* a step's weftinstance attribute is a UUID */
} weft_job_claim_t;

/* The next step for a claim's answer; *reason is set for WEFT_JOB_FAIL
 * ("malformed" etc. is the caller's preset reason for bad input, so
 * *reason is NULL then; otherwise "expired", "max_attempts",
 * "abandoned_claims" or "malformed"). A key whose max_attempts attempts
 * all ran is not run again (only a lowered max_attempts gets there: the
 * last allowed attempt's failure is recorded as dead); a key taken over
 * more than max_takeovers times from owners that died holding it is not
 * run again either: its event may be what kills them. */
weft_job_next_t weft_job_after_claim(const weft_job_claim_t *c, const char **reason);

/* An attempt that asks for a retry is dead-lettered once attempts reached
 * max_attempts: returns the kind to record. */
weft_rec_kind_t weft_job_after_attempt(weft_rec_kind_t rec, int attempts, int max_attempts);

#endif
