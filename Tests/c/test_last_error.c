/* test_last_error.c — fs_last_error(): "" after each success, a message after
 * each failure, and one message per thread. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

#include "fixture.h"

static int64_t fixed_clock(void *ctx) {
    (void)ctx;
    return 1700000000000LL;
}

/* Leaves a failure message behind so that a success must clear it. */
static void fail_something(void) {
    char *out = SENTINEL;
    fs_store_get(NULL, "task", "x", &out);
}

#define EXPECT_CLEARED(call)                                                      \
    do {                                                                          \
        fs_status st_;                                                            \
        char msg_[FS_TEST_MSG_MAX];                                               \
        fail_something();                                                         \
        st_ = (call);                                                             \
        fs_test_copy_last_error(msg_);                                            \
        if (st_ != FS_OK)                                                         \
            fs_test_fail(__FILE__, __LINE__, "%s returned %s: \"%s\"", #call,      \
                         fs_status_name(st_), msg_);                              \
        else if (msg_[0] != '\0')                                                 \
            fs_test_fail(__FILE__, __LINE__, "after successful %s fs_last_error() " \
                         "is \"%s\", expected \"\"", #call, msg_);                \
    } while (0)

#define EXPECT_MESSAGE(call, expected)                                            \
    do {                                                                          \
        fs_status st_ = (call);                                                   \
        char msg_[FS_TEST_MSG_MAX];                                               \
        fs_test_copy_last_error(msg_);                                            \
        if (st_ != (expected))                                                    \
            fs_test_fail(__FILE__, __LINE__, "%s returned %s, expected %s: \"%s\"", \
                         #call, fs_status_name(st_), fs_status_name(expected), msg_); \
        if (msg_[0] == '\0')                                                      \
            fs_test_fail(__FILE__, __LINE__, "after failed %s fs_last_error() is " \
                         "empty, expected a reason", #call);                      \
    } while (0)

TEST(test_last_error_is_empty_after_every_successful_call) {
    fs_store *s = NULL;
    char *out = NULL;
    int64_t n = 0;
    EXPECT_CLEARED(fs_store_open(test_path("a.db"), TASK_SCHEMA, NULL, &s));
    REQUIRE(s != NULL);
    EXPECT_CLEARED(fs_store_set_clock(s, fixed_clock, NULL));
    EXPECT_CLEARED(fs_store_apply(s, act("T-1", "'set':{'status':'open'}"), &out));
    fs_free(out);
    out = NULL;
    EXPECT_CLEARED(fs_store_get(s, "task", "T-1", &out));
    fs_free(out);
    out = NULL;
    EXPECT_CLEARED(fs_store_query(s, Q("{'type':'task'}"), &out));
    fs_free(out);
    out = NULL;
    EXPECT_CLEARED(fs_store_stats(s, &out));
    fs_free(out);
    out = NULL;
    EXPECT_CLEARED(fs_outbox_count(s, &n));
    EXPECT_CLEARED(fs_outbox_list(s, NULL, &out));
    fs_free(out);
    out = NULL;
    EXPECT_CLEARED(fs_audit_query(s, NULL, &out));
    fs_free(out);
    out = NULL;
    EXPECT_CLEARED(fs_store_set_clock(s, NULL, NULL));
    EXPECT_CLEARED(fs_store_close(s));
    EXPECT_CLEARED(fs_store_close(NULL));
}

TEST(test_last_error_is_set_after_every_failed_call) {
    fs_store *s = open_task_store();
    fs_store *other = NULL;
    char *out = NULL;
    int64_t n = 0;
    REQUIRE(s != NULL);
    create_task(s, "T-1", "open");
    EXPECT_MESSAGE(fs_store_open(NULL, TASK_SCHEMA, NULL, &other), FS_ERR_ARG);
    EXPECT_MESSAGE(fs_store_set_clock(NULL, fixed_clock, NULL), FS_ERR_ARG);
    EXPECT_MESSAGE(fs_store_apply(s, act("T-2", "'set':{'nope':1}"), &out), FS_ERR_SCHEMA);
    EXPECT_MESSAGE(fs_store_get(s, "task", "missing", &out), FS_ERR_NOT_FOUND);
    EXPECT_MESSAGE(fs_store_query(s, Q("{'type':'nope'}"), &out), FS_ERR_SCHEMA);
    EXPECT_MESSAGE(fs_store_stats(s, NULL), FS_ERR_ARG);
    EXPECT_MESSAGE(fs_outbox_count(s, NULL), FS_ERR_ARG);
    EXPECT_MESSAGE(fs_outbox_list(s, "{", &out), FS_ERR_JSON);
    EXPECT_MESSAGE(fs_outbox_discard(s, "no-such-key"), FS_ERR_NOT_FOUND);
    EXPECT_MESSAGE(fs_audit_query(s, "{", &out), FS_ERR_JSON);
    CHECK_OK(fs_store_close(s));
    EXPECT_MESSAGE(fs_store_close(s), FS_ERR_CLOSED);
    EXPECT_MESSAGE(fs_outbox_count(s, &n), FS_ERR_CLOSED);
}

TEST(test_last_error_names_the_unknown_field) {
    fs_store *s = open_task_store();
    char *out = NULL;
    REQUIRE(s != NULL);
    create_task(s, "T-1", "open");
    CHECK_STATUS(fs_store_apply(s, act("T-1", "'set':{'colour_xyz':'red'}"), &out),
                 FS_ERR_SCHEMA);
    if (strstr(fs_last_error(), "colour_xyz") == NULL)
        fs_test_fail(__FILE__, __LINE__, "message \"%s\" does not name the field colour_xyz",
                     fs_last_error());
    CHECK_STATUS(fs_store_get(s, "ghost_type", "T-1", &out), FS_ERR_SCHEMA);
    if (strstr(fs_last_error(), "ghost_type") == NULL)
        fs_test_fail(__FILE__, __LINE__, "message \"%s\" does not name the type ghost_type",
                     fs_last_error());
    fs_store_close(s);
}

typedef struct {
    fs_store *store;
    int saw_empty_after_success;
    int saw_message_after_failure;
    char message[FS_TEST_MSG_MAX];
    pthread_barrier_t *barrier;
} thread_msg;

static void *other_thread(void *arg) {
    thread_msg *t = (thread_msg *)arg;
    int64_t n = 0;
    char *out = NULL;
    /* 1: the main thread has just failed; our slot must still be clean. */
    pthread_barrier_wait(t->barrier);
    t->saw_empty_after_success = fs_outbox_count(t->store, &n) == FS_OK &&
                                 fs_last_error()[0] == '\0';
    /* fail on this thread with a different reason */
    if (fs_store_get(t->store, "task", "absent-here", &out) == FS_ERR_NOT_FOUND) {
        snprintf(t->message, sizeof t->message, "%s", fs_last_error());
        t->saw_message_after_failure = t->message[0] != '\0';
    }
    pthread_barrier_wait(t->barrier); /* 2 */
    pthread_barrier_wait(t->barrier); /* 3: main checked its message */
    /* our message is still ours */
    if (strcmp(fs_last_error(), t->message) != 0) t->saw_message_after_failure = 0;
    return NULL;
}

TEST(test_last_error_is_thread_local) {
    fs_store *s = open_task_store();
    pthread_t th;
    pthread_barrier_t barrier;
    thread_msg t;
    char mine[FS_TEST_MSG_MAX];
    const char *held;
    char *out = NULL;
    REQUIRE(s != NULL);
    memset(&t, 0, sizeof t);
    t.store = s;
    t.barrier = &barrier;
    pthread_barrier_init(&barrier, NULL, 2);
    REQUIRE(pthread_create(&th, NULL, other_thread, &t) == 0);

    CHECK_STATUS(fs_store_apply(s, act("T-1", "'set':{'bogus':1}"), &out), FS_ERR_SCHEMA);
    held = fs_last_error(); /* valid until this thread's next fs_* call */
    snprintf(mine, sizeof mine, "%s", held);
    CHECK(mine[0] != '\0');
    pthread_barrier_wait(&barrier); /* 1 */
    pthread_barrier_wait(&barrier); /* 2: the other thread succeeded, then failed */
    CHECK_STR_EQ(held, mine);
    CHECK_STR_EQ(fs_last_error(), mine);
    pthread_barrier_wait(&barrier); /* 3 */
    pthread_join(th, NULL);
    pthread_barrier_destroy(&barrier);

    CHECK(t.saw_empty_after_success);
    CHECK(t.saw_message_after_failure);
    CHECK_STR_EQ(fs_last_error(), mine);
    fs_store_close(s);
}
