"""The status codes have one source, include/fieldsync.h: each FS_OK/FS_ERR_*
define there (code, name, comment) must match what the loaded library names
it (fs_status_name, from the header itself), the binding's exception class
for it (status, docstring) and the table in docs/ABI.md."""

import re

import fieldsync
from support import HEADER, REPO


def header_codes():
    """{name: (code, description)} from the defines and their comments."""
    found = re.findall(r"^#define\s+(FS_(?:OK|ERR_[A-Z_]+))\s+(\d+)\s*/\*(.*?)\*/",
                       HEADER.read_text(), re.M | re.S)
    return {name: (int(code), " ".join(comment.split())) for name, code, comment in found}


def test_the_header_numbers_codes_once_from_zero():
    codes = sorted(code for code, _ in header_codes().values())
    assert codes == list(range(len(codes))), codes
    assert header_codes()["FS_OK"][0] == 0
    assert len(codes) >= 15


def test_the_library_names_every_code_of_the_header():
    codes = header_codes()
    for name, (code, _) in codes.items():
        assert fieldsync.status_name(code) == name
    past_the_last = max(code for code, _ in codes.values()) + 1
    assert fieldsync.status_name(past_the_last) == "FS_ERR_UNKNOWN"
    assert fieldsync.status_name(-1) == "FS_ERR_UNKNOWN"


def test_each_error_code_has_one_exception_class_saying_what_the_header_says():
    classes = [c for c in vars(fieldsync).values()
               if isinstance(c, type) and issubclass(c, fieldsync.FieldSyncError)
               and c is not fieldsync.FieldSyncError]
    by_status = {c.status: c for c in classes}
    assert len(by_status) == len(classes), "two classes share a status"
    codes = header_codes()
    errors = {code: (name, text) for name, (code, text) in codes.items() if name != "FS_OK"}
    assert sorted(by_status) == sorted(errors)
    for code, (name, text) in errors.items():
        cls = by_status[code]
        assert " ".join((cls.__doc__ or "").split()) == f"{name}: {text}.", cls.__name__
        assert cls.__name__ in fieldsync.__all__
        assert fieldsync._ERRORS[code] is cls  # what a failing call raises
        assert str(cls("m")) == f"{name}: m"


def test_the_abi_document_lists_the_header_codes():
    table = re.findall(r"^\|\s*`(FS_(?:OK|ERR_[A-Z_]+))`\s*\|\s*(\d+)\s*\|",
                       (REPO / "docs" / "ABI.md").read_text(), re.M)
    assert {name: int(code) for name, code in table} == \
        {name: code for name, (code, _) in header_codes().items()}
    assert len(table) == len(header_codes())


def test_errors_are_also_the_built_in_exceptions_a_python_author_catches(store, tmp_path):
    expected = {
        fieldsync.ArgError: ValueError, fieldsync.JSONError: ValueError, fieldsync.SchemaError: ValueError,
        fieldsync.NotFoundError: LookupError, fieldsync.FieldSyncIOError: OSError, fieldsync.FullError: OSError,
        fieldsync.BusyError: TimeoutError, fieldsync.ClosedError: ValueError, fieldsync.InternalError: RuntimeError,
        fieldsync.TooBigError: ValueError, fieldsync.MisuseError: RuntimeError, fieldsync.AuthError: PermissionError,
    }
    for cls, builtin in expected.items():
        assert issubclass(cls, builtin) and issubclass(cls, fieldsync.FieldSyncError), cls
    # Raised by the library, caught as the built-in, read as before.
    try:
        store.get("task", "nope")
    except LookupError as e:
        assert isinstance(e, fieldsync.NotFoundError) and e.status == 4
        assert str(e).startswith("FS_ERR_NOT_FOUND: ") and e.message in str(e)
    else:
        raise AssertionError("no error for a missing record")
    # An OSError made from a message and a status keeps both as such: errno
    # is not the message.
    full = fieldsync.FullError("disk full", 7)
    assert full.errno is None and full.status == 7 and str(full) == "FS_ERR_FULL: disk full"
    store.close()
    try:
        store.stats()
    except ValueError as e:
        assert isinstance(e, fieldsync.ClosedError)
    else:
        raise AssertionError("no error on a closed store")
