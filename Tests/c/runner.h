/*
 * runner.h — the tiny test runner of the C suite: TEST registration and the
 * CHECK/REQUIRE macros. Compiles as C99 and as C++11.
 *
 * Each test runs in its own forked child, so a crash or a hang inside the
 * library is reported as that test's failure and the suite goes on.
 * CHECK_* record a failure and continue; REQUIRE_* record it and return from
 * the test (use them where continuing would dereference NULL).
 */
#ifndef FS_TEST_RUNNER_H
#define FS_TEST_RUNNER_H

#include <stdint.h>
#include <string.h>

#include "fieldsync.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef void (*fs_test_fn)(void);

void fs_test_register(const char *name, fs_test_fn fn, const char *file, int line);

/* Records one failure of the running test and prints it with file:line. */
void fs_test_fail(const char *file, int line, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

/* Number of failures recorded so far by the running test. */
int fs_test_failures(void);

/* The running test's private temporary directory (created on first use,
 * removed after the test unless it failed or FS_TEST_KEEP is set). */
const char *fs_test_dir(void);

/* Defines a test function and registers it before main() runs. */
#define TEST(name)                                                           \
    static void name(void);                                                  \
    __attribute__((constructor)) static void name##_register(void) {         \
        fs_test_register(#name, name, __FILE__, __LINE__);                   \
    }                                                                        \
    static void name(void)

/* A copy of fs_last_error() taken right after the call under test. */
#define FS_TEST_MSG_MAX 1024
void fs_test_copy_last_error(char *buf);

#define CHECK(cond)                                                          \
    do {                                                                     \
        if (!(cond)) fs_test_fail(__FILE__, __LINE__, "CHECK(%s)", #cond);   \
    } while (0)

#define REQUIRE(cond)                                                        \
    do {                                                                     \
        if (!(cond)) {                                                       \
            fs_test_fail(__FILE__, __LINE__, "REQUIRE(%s)", #cond);          \
            return;                                                          \
        }                                                                    \
    } while (0)

/* Evaluates `call` (an fs_status expression) once and checks it equals
 * `expected`; on mismatch prints both names and fs_last_error(). */
#define CHECK_STATUS(call, expected)                                         \
    do {                                                                     \
        fs_status fs_t_st_ = (call);                                         \
        char fs_t_msg_[FS_TEST_MSG_MAX];                                     \
        fs_test_copy_last_error(fs_t_msg_);                                  \
        if (fs_t_st_ != (expected))                                          \
            fs_test_fail(__FILE__, __LINE__, "%s\n      returned %s, expected %s; " \
                         "fs_last_error: \"%s\"", #call,                     \
                         fs_status_name(fs_t_st_), fs_status_name(expected), \
                         fs_t_msg_);                                         \
    } while (0)

#define REQUIRE_STATUS(call, expected)                                       \
    do {                                                                     \
        fs_status fs_t_st_ = (call);                                         \
        char fs_t_msg_[FS_TEST_MSG_MAX];                                     \
        fs_test_copy_last_error(fs_t_msg_);                                  \
        if (fs_t_st_ != (expected)) {                                        \
            fs_test_fail(__FILE__, __LINE__, "%s\n      returned %s, expected %s; " \
                         "fs_last_error: \"%s\"", #call,                     \
                         fs_status_name(fs_t_st_), fs_status_name(expected), \
                         fs_t_msg_);                                         \
            return;                                                          \
        }                                                                    \
    } while (0)

#define CHECK_OK(call) CHECK_STATUS(call, FS_OK)
#define REQUIRE_OK(call) REQUIRE_STATUS(call, FS_OK)

/* Either of two statuses is acceptable (where the header leaves the choice). */
#define CHECK_STATUS2(call, exp1, exp2)                                      \
    do {                                                                     \
        fs_status fs_t_st_ = (call);                                         \
        char fs_t_msg_[FS_TEST_MSG_MAX];                                     \
        fs_test_copy_last_error(fs_t_msg_);                                  \
        if (fs_t_st_ != (exp1) && fs_t_st_ != (exp2))                        \
            fs_test_fail(__FILE__, __LINE__, "%s\n      returned %s, expected %s or %s; " \
                         "fs_last_error: \"%s\"", #call,                     \
                         fs_status_name(fs_t_st_), fs_status_name(exp1),     \
                         fs_status_name(exp2), fs_t_msg_);                   \
    } while (0)

#define CHECK_INT_EQ(actual, expected)                                       \
    do {                                                                     \
        long long fs_t_a_ = (long long)(actual);                             \
        long long fs_t_e_ = (long long)(expected);                           \
        if (fs_t_a_ != fs_t_e_)                                              \
            fs_test_fail(__FILE__, __LINE__, "%s == %lld, expected %s == %lld", \
                         #actual, fs_t_a_, #expected, fs_t_e_);              \
    } while (0)

#define CHECK_STR_EQ(actual, expected)                                       \
    do {                                                                     \
        const char *fs_t_a_ = (actual);                                      \
        const char *fs_t_e_ = (expected);                                    \
        if (fs_t_a_ == NULL || fs_t_e_ == NULL || strcmp(fs_t_a_, fs_t_e_) != 0) \
            fs_test_fail(__FILE__, __LINE__, "%s == \"%s\", expected \"%s\"", \
                         #actual, fs_t_a_ ? fs_t_a_ : "(null)",              \
                         fs_t_e_ ? fs_t_e_ : "(null)");                      \
    } while (0)

/* fs_last_error() must be "" right after a successful call. */
#define CHECK_NO_ERROR_MESSAGE()                                             \
    do {                                                                     \
        const char *fs_t_m_ = fs_last_error();                               \
        if (fs_t_m_ == NULL || fs_t_m_[0] != '\0')                           \
            fs_test_fail(__FILE__, __LINE__,                                 \
                         "fs_last_error() is \"%s\" after a success, expected \"\"", \
                         fs_t_m_ ? fs_t_m_ : "(NULL)");                      \
    } while (0)

/* fs_last_error() must be a non-empty message right after a failed call. */
#define CHECK_ERROR_MESSAGE()                                                \
    do {                                                                     \
        const char *fs_t_m_ = fs_last_error();                               \
        if (fs_t_m_ == NULL || fs_t_m_[0] == '\0')                           \
            fs_test_fail(__FILE__, __LINE__,                                 \
                         "fs_last_error() is %s after a failure, expected a message", \
                         fs_t_m_ ? "\"\"" : "NULL");                         \
    } while (0)

#ifdef __cplusplus
}
#endif

#endif /* FS_TEST_RUNNER_H */
