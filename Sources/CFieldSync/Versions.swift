// fs_version, fs_abi_version, fs_last_error, fs_free, fs_status_name: the
// versions and status names are the header's own (Sources/CFieldSyncABI).
internal import CFieldSyncABI
import FieldSync
import Glibc

@_cdecl("fs_version")
public func fs_version() -> UnsafePointer<CChar> { fs_header_version() }

@_cdecl("fs_abi_version")
public func fs_abi_version() -> Int32 { FS_ABI_VERSION }

@_cdecl("fs_last_error")
public func fs_last_error() -> UnsafePointer<CChar> { lastErrorMessage() }

@_cdecl("fs_free")
public func fs_free(_ p: UnsafeMutableRawPointer?) { free(p) }

@_cdecl("fs_status_name")
public func fs_status_name(_ status: Int32) -> UnsafePointer<CChar> { fs_header_status_name(status) }
