/* test_clock.c — fs_store_set_clock: the test clock drives device_time, is
 * called with its ctx on the calling thread, and the hybrid logical clock
 * never goes backwards (docs/AUDIT.md). */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "fixture.h"

#define FUTURE_MS 4102444800000LL /* 2100-01-01: later than any real clock */

typedef struct {
    int64_t now;
    int calls;
    int wrong_thread;
    pthread_t owner;
} fake_clock;

static int64_t read_fake(void *ctx) {
    fake_clock *c = (fake_clock *)ctx;
    c->calls++;
    if (!pthread_equal(pthread_self(), c->owner)) c->wrong_thread++;
    return c->now;
}

static long long hlc_of(json_t *r) { return jint(r, "hlc"); }

TEST(test_clock_sets_device_time_in_audit_and_outbox) {
    fs_store *s = open_task_store();
    fake_clock c;
    json_t *rows, *ob;
    REQUIRE(s != NULL);
    c.now = 1234567890123LL;
    c.calls = 0;
    c.wrong_thread = 0;
    c.owner = pthread_self();
    REQUIRE_OK(fs_store_set_clock(s, read_fake, &c));
    CHECK_NO_ERROR_MESSAGE();
    create_task(s, "T-1", "open");
    c.now = 1234567899999LL;
    json_decref(apply_ok(s, act("T-1", "'inc':{'picked':1}")));
    rows = audit_ok(s, NULL);
    REQUIRE(rows != NULL && json_array_size(rows) == 2);
    CHECK_INT_EQ(jint(json_array_get(rows, 0), "device_time"), 1234567890123LL);
    CHECK_INT_EQ(jint(json_array_get(rows, 1), "device_time"), 1234567899999LL);
    ob = outbox_ok(s, NULL);
    REQUIRE(ob != NULL && json_array_size(ob) == 2);
    CHECK_INT_EQ(jint(json_array_get(ob, 0), "device_time"), 1234567890123LL);
    CHECK_INT_EQ(jint(json_array_get(ob, 1), "device_time"), 1234567899999LL);
    json_decref(rows);
    json_decref(ob);
    CHECK(c.calls >= 2);
    CHECK_INT_EQ(c.wrong_thread, 0);
    fs_store_close(s);
}

typedef struct {
    fs_store *store;
    fake_clock *clock;
    fs_status status;
} thread_arg;

static void *apply_from_thread(void *arg) {
    thread_arg *t = (thread_arg *)arg;
    char *out = NULL;
    /* every clock call during this apply must come from this thread */
    t->clock->owner = pthread_self();
    t->status = fs_store_apply(t->store, act("T-thread", "'set':{'status':'open'}"), &out);
    if (t->status == FS_OK) fs_free(out);
    pool_release();
    return NULL;
}

TEST(test_clock_is_called_with_its_ctx_on_the_applying_thread) {
    fs_store *s = open_task_store();
    fake_clock c;
    thread_arg t;
    pthread_t th;
    REQUIRE(s != NULL);
    c.now = FUTURE_MS;
    c.calls = 0;
    c.wrong_thread = 0;
    c.owner = pthread_self();
    REQUIRE_OK(fs_store_set_clock(s, read_fake, &c));
    t.store = s;
    t.clock = &c;
    t.status = -1;
    REQUIRE(pthread_create(&th, NULL, apply_from_thread, &t) == 0);
    pthread_join(th, NULL);
    CHECK_INT_EQ(t.status, FS_OK);
    CHECK(c.calls >= 1);
    CHECK_INT_EQ(c.wrong_thread, 0);
    c.calls = 0;
    c.owner = pthread_self();
    json_decref(apply_ok(s, act("T-main", "'set':{'status':'open'}")));
    CHECK(c.calls >= 1);
    CHECK_INT_EQ(c.wrong_thread, 0);
    fs_store_close(s);
}

TEST(test_hlc_physical_part_follows_the_clock) {
    fs_store *s = open_task_store();
    fake_clock c;
    json_t *r1, *r2;
    REQUIRE(s != NULL);
    c.now = FUTURE_MS;
    c.calls = 0;
    c.wrong_thread = 0;
    c.owner = pthread_self();
    REQUIRE_OK(fs_store_set_clock(s, read_fake, &c));
    r1 = apply_ok(s, act("T-1", "'set':{'status':'open'}"));
    r2 = apply_ok(s, act("T-1", "'set':{'site':'A'}"));
    REQUIRE(r1 != NULL && r2 != NULL);
    /* stamp = physical_ms << 16 | logical */
    CHECK_INT_EQ(hlc_of(r1) >> 16, FUTURE_MS);
    CHECK_INT_EQ(hlc_of(r2) >> 16, FUTURE_MS);
    CHECK_INT_EQ(hlc_of(r2), hlc_of(r1) + 1);
    json_decref(r1);
    json_decref(r2);
    c.now = FUTURE_MS + 5;
    r1 = apply_ok(s, act("T-1", "'set':{'site':'B'}"));
    CHECK_INT_EQ(hlc_of(r1) >> 16, FUTURE_MS + 5);
    CHECK_INT_EQ(hlc_of(r1) & 0xffff, 0);
    json_decref(r1);
    fs_store_close(s);
}

TEST(test_hlc_never_goes_backwards_when_the_clock_does) {
    fs_store *s = open_task_store();
    fake_clock c;
    long long last = 0;
    int i;
    json_t *rows;
    REQUIRE(s != NULL);
    c.now = FUTURE_MS;
    c.calls = 0;
    c.wrong_thread = 0;
    c.owner = pthread_self();
    REQUIRE_OK(fs_store_set_clock(s, read_fake, &c));
    create_task(s, "T-1", "open");
    for (i = 0; i < 10; i++) {
        json_t *r;
        /* the wall clock jumps back an hour, then a day, then to 1970 */
        c.now = i < 3 ? FUTURE_MS - 3600000LL * (i + 1) : (i < 6 ? FUTURE_MS - 86400000LL : 5);
        r = apply_ok(s, act("T-1", "'inc':{'picked':1}"));
        REQUIRE(r != NULL);
        if (hlc_of(r) <= last)
            fs_test_fail(__FILE__, __LINE__, "hlc %lld after %lld when the clock went back",
                         hlc_of(r), last);
        if ((hlc_of(r) >> 16) < FUTURE_MS)
            fs_test_fail(__FILE__, __LINE__, "hlc physical part %lld fell below %lld",
                         hlc_of(r) >> 16, FUTURE_MS);
        last = hlc_of(r);
        json_decref(r);
    }
    /* device_time still records the (backward) wall clock as it was */
    rows = audit_ok(s, Q("{'desc':true,'limit':1}"));
    CHECK_INT_EQ(jint(json_array_get(rows, 0), "device_time"), 5);
    json_decref(rows);
    fs_store_close(s);
}

TEST(test_hlc_keeps_increasing_across_reopen) {
    fs_store *s = open_task_store();
    fake_clock c;
    json_t *r;
    long long before;
    REQUIRE(s != NULL);
    c.now = FUTURE_MS;
    c.calls = 0;
    c.wrong_thread = 0;
    c.owner = pthread_self();
    REQUIRE_OK(fs_store_set_clock(s, read_fake, &c));
    r = apply_ok(s, act("T-1", "'set':{'status':'open'}"));
    REQUIRE(r != NULL);
    before = hlc_of(r);
    json_decref(r);
    fs_store_close(s);
    /* reopened with the real clock, which is far behind the stored stamp */
    s = open_task_store();
    REQUIRE(s != NULL);
    r = apply_ok(s, act("T-1", "'set':{'site':'A'}"));
    REQUIRE(r != NULL);
    CHECK(hlc_of(r) > before);
    json_decref(r);
    fs_store_close(s);
}

TEST(test_set_clock_null_restores_the_system_clock) {
    fs_store *s = open_task_store();
    fake_clock c;
    json_t *rows;
    long long wall_ms, dt;
    struct timespec ts;
    REQUIRE(s != NULL);
    c.now = 42;
    c.calls = 0;
    c.wrong_thread = 0;
    c.owner = pthread_self();
    REQUIRE_OK(fs_store_set_clock(s, read_fake, &c));
    create_task(s, "T-1", "open");
    REQUIRE_OK(fs_store_set_clock(s, NULL, NULL));
    c.calls = 0;
    clock_gettime(CLOCK_REALTIME, &ts);
    wall_ms = (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
    json_decref(apply_ok(s, act("T-1", "'set':{'site':'A'}")));
    CHECK_INT_EQ(c.calls, 0);
    rows = audit_ok(s, NULL);
    REQUIRE(rows != NULL && json_array_size(rows) == 2);
    CHECK_INT_EQ(jint(json_array_get(rows, 0), "device_time"), 42);
    dt = jint(json_array_get(rows, 1), "device_time") - wall_ms;
    if (dt < -1000 || dt > 60000)
        fs_test_fail(__FILE__, __LINE__, "device_time %lld is not near the wall clock %lld",
                     jint(json_array_get(rows, 1), "device_time"), wall_ms);
    json_decref(rows);
    fs_store_close(s);
}

TEST(test_default_clock_is_the_system_clock) {
    fs_store *s = open_task_store();
    json_t *r, *rows;
    struct timespec ts;
    long long wall_ms, dt;
    REQUIRE(s != NULL);
    clock_gettime(CLOCK_REALTIME, &ts);
    wall_ms = (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
    r = apply_ok(s, act("T-1", "'set':{'status':'open'}"));
    REQUIRE(r != NULL);
    dt = (hlc_of(r) >> 16) - wall_ms;
    CHECK(dt >= -1000 && dt <= 60000);
    rows = audit_ok(s, NULL);
    dt = jint(json_array_get(rows, 0), "device_time") - wall_ms;
    CHECK(dt >= -1000 && dt <= 60000);
    json_decref(rows);
    json_decref(r);
    fs_store_close(s);
}

TEST(test_set_clock_rejects_a_null_store) {
    CHECK_STATUS(fs_store_set_clock(NULL, read_fake, NULL), FS_ERR_ARG);
    CHECK_ERROR_MESSAGE();
    CHECK_STATUS(fs_store_set_clock(NULL, NULL, NULL), FS_ERR_ARG);
}
