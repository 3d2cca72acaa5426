/* test_threads.c — one handle used from several threads: concurrent applies
 * all succeed and the counts, sequence and audit chain stay consistent;
 * reads run alongside writes; close waits for a running call. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "fixture.h"

#define THREADS 8
#define PER_THREAD 40

typedef struct {
    fs_store *store;
    int index;
    int ok;
    int failed;
    char first_error[FS_TEST_MSG_MAX];
    long long *seqs; /* PER_THREAD slots */
} worker;

static void *apply_worker(void *arg) {
    worker *w = (worker *)arg;
    int i;
    for (i = 0; i < PER_THREAD; i++) {
        char id[32];
        char *out = NULL;
        const char *action;
        fs_status st;
        /* every thread increments the shared record and edits its own */
        if (i % 2 == 0) {
            action = act("shared", "'inc':{'picked':1}");
        } else {
            snprintf(id, sizeof id, "W-%d", w->index);
            action = act(id, "'set':{'status':'open'},'add':{'tags':['t']}");
        }
        st = fs_store_apply(w->store, action, &out);
        if (st == FS_OK) {
            json_t *r = json_loads(out, 0, NULL);
            w->seqs[i] = jint(r, "seq");
            json_decref(r);
            fs_free(out);
            w->ok++;
        } else {
            if (w->failed == 0)
                snprintf(w->first_error, sizeof w->first_error, "%s: %s", fs_status_name(st),
                         fs_last_error());
            w->failed++;
        }
    }
    pool_release();
    return NULL;
}

TEST(test_threads_applying_to_one_handle_all_succeed_consistently) {
    fs_store *s = open_store("a.db", TASK_SCHEMA, "{\"durability\":\"normal\"}");
    pthread_t th[THREADS];
    worker w[THREADS];
    long long seqs[THREADS * PER_THREAD];
    char *seen;
    int i, total_ok = 0;
    json_t *rec, *rows, *st;
    REQUIRE(s != NULL);
    create_task(s, "shared", "open");
    for (i = 0; i < THREADS; i++) {
        memset(&w[i], 0, sizeof w[i]);
        w[i].store = s;
        w[i].index = i;
        w[i].seqs = &seqs[i * PER_THREAD];
        REQUIRE(pthread_create(&th[i], NULL, apply_worker, &w[i]) == 0);
    }
    for (i = 0; i < THREADS; i++) {
        pthread_join(th[i], NULL);
        total_ok += w[i].ok;
        if (w[i].failed)
            fs_test_fail(__FILE__, __LINE__, "thread %d: %d applies failed, first: %s", i,
                         w[i].failed, w[i].first_error);
    }
    CHECK_INT_EQ(total_ok, THREADS * PER_THREAD);
    /* every sequence number 2..N+1 handed out exactly once */
    seen = (char *)calloc(THREADS * PER_THREAD + 2, 1);
    REQUIRE(seen != NULL);
    for (i = 0; i < THREADS * PER_THREAD; i++) {
        long long q = seqs[i];
        if (q < 2 || q > THREADS * PER_THREAD + 1 || seen[q])
            fs_test_fail(__FILE__, __LINE__, "sequence number %lld duplicated or out of range", q);
        else
            seen[q] = 1;
    }
    free(seen);
    CHECK_INT_EQ(outbox_count(s), THREADS * PER_THREAD + 1);
    CHECK_INT_EQ(audit_count(s), THREADS * PER_THREAD + 1);
    rec = get_ok(s, "task", "shared");
    CHECK_INT_EQ(jint(rec, "picked"), THREADS * PER_THREAD / 2);
    json_decref(rec);
    rows = audit_ok(s, NULL);
    REQUIRE(rows != NULL);
    CHECK_INT_EQ(verify_audit_chain(rows), 0);
    for (i = 1; i < (int)json_array_size(rows); i++)
        if (jint(json_array_get(rows, i), "hlc") <= jint(json_array_get(rows, i - 1), "hlc"))
            fs_test_fail(__FILE__, __LINE__, "audit row %d: hlc not increasing", i + 1);
    json_decref(rows);
    st = stats_ok(s);
    CHECK_INT_EQ(jint(st, "records"), THREADS + 1);
    json_decref(st);
    fs_store_close(s);
}

typedef struct {
    fs_store *store;
    volatile int *stop;
    int reads;
    int failed;
    char first_error[FS_TEST_MSG_MAX];
} reader;

static void *read_worker(void *arg) {
    reader *r = (reader *)arg;
    while (!*r->stop) {
        char *out = NULL;
        int64_t n;
        fs_status st = fs_store_query(r->store, "{\"type\":\"task\",\"order_by\":\"picked\"}", &out);
        if (st == FS_OK) {
            json_t *rows = json_loads(out, 0, NULL);
            if (!json_is_array(rows)) st = FS_ERR_INTERNAL;
            json_decref(rows);
            fs_free(out);
        }
        if (st == FS_OK) st = fs_outbox_count(r->store, &n);
        if (st == FS_OK) {
            st = fs_audit_query(r->store, "{\"desc\":true,\"limit\":5}", &out);
            if (st == FS_OK) fs_free(out);
        }
        if (st != FS_OK) {
            if (r->failed == 0)
                snprintf(r->first_error, sizeof r->first_error, "%s: %s", fs_status_name(st),
                         fs_last_error());
            r->failed++;
        }
        r->reads++;
    }
    return NULL;
}

TEST(test_threads_reads_run_alongside_writes) {
    fs_store *s = open_store("a.db", TASK_SCHEMA, "{\"durability\":\"normal\"}");
    pthread_t wt[2], rt[2];
    worker w[2];
    reader r[2];
    long long seqs[2 * PER_THREAD];
    volatile int stop = 0;
    int i;
    REQUIRE(s != NULL);
    create_task(s, "shared", "open");
    for (i = 0; i < 2; i++) {
        memset(&r[i], 0, sizeof r[i]);
        r[i].store = s;
        r[i].stop = &stop;
        REQUIRE(pthread_create(&rt[i], NULL, read_worker, &r[i]) == 0);
    }
    for (i = 0; i < 2; i++) {
        memset(&w[i], 0, sizeof w[i]);
        w[i].store = s;
        w[i].index = i;
        w[i].seqs = &seqs[i * PER_THREAD];
        REQUIRE(pthread_create(&wt[i], NULL, apply_worker, &w[i]) == 0);
    }
    for (i = 0; i < 2; i++) pthread_join(wt[i], NULL);
    stop = 1;
    for (i = 0; i < 2; i++) pthread_join(rt[i], NULL);
    for (i = 0; i < 2; i++) {
        CHECK_INT_EQ(w[i].failed, 0);
        if (r[i].failed)
            fs_test_fail(__FILE__, __LINE__, "reader %d: %d failures, first: %s", i, r[i].failed,
                         r[i].first_error);
        CHECK(r[i].reads > 0);
    }
    CHECK_INT_EQ(outbox_count(s), 2 * PER_THREAD + 1);
    fs_store_close(s);
}

typedef struct {
    fs_store *store;
    int ok;
    fs_status last;
    volatile int started;
} closer_victim;

static void *apply_until_refused(void *arg) {
    closer_victim *v = (closer_victim *)arg;
    int i;
    for (i = 0; i < 100000; i++) {
        char *out = NULL;
        fs_status st = fs_store_apply(v->store, act("T-1", "'inc':{'picked':1}"), &out);
        v->started = 1;
        if (st != FS_OK) {
            v->last = st;
            if (out != NULL) v->last = FS_ERR_INTERNAL; /* out must be NULL on failure */
            pool_release();
            return NULL;
        }
        fs_free(out);
        v->ok++;
    }
    v->last = FS_OK;
    pool_release();
    return NULL;
}

TEST(test_threads_close_waits_for_a_running_call_then_refuses) {
    fs_store *s = open_store("a.db", TASK_SCHEMA, "{\"durability\":\"normal\"}");
    closer_victim v;
    pthread_t th;
    struct timespec pause = {0, 20 * 1000 * 1000};
    json_t *rec;
    REQUIRE(s != NULL);
    create_task(s, "T-1", "open");
    memset(&v, 0, sizeof v);
    v.store = s;
    v.last = -1;
    REQUIRE(pthread_create(&th, NULL, apply_until_refused, &v) == 0);
    while (!v.started) nanosleep(&pause, NULL);
    nanosleep(&pause, NULL);
    CHECK_OK(fs_store_close(s));
    pthread_join(th, NULL);
    CHECK_STATUS(v.last, FS_ERR_CLOSED);
    CHECK(v.ok > 0);
    /* every apply that returned FS_OK is in the file, and nothing else */
    s = open_store("a.db", TASK_SCHEMA, NULL);
    REQUIRE(s != NULL);
    CHECK_INT_EQ(outbox_count(s), v.ok + 1);
    CHECK_INT_EQ(audit_count(s), v.ok + 1);
    rec = get_ok(s, "task", "T-1");
    CHECK_INT_EQ(jint(rec, "picked"), v.ok);
    json_decref(rec);
    fs_store_close(s);
}
