// fs_version, fs_abi_version, fs_last_error, fs_free, fs_status_name.
import FieldSync
import Glibc

@_cdecl("fs_version")
public func fs_version() -> UnsafePointer<CChar> { staticCString("0.1.0") }

@_cdecl("fs_abi_version")
public func fs_abi_version() -> Int32 { 1 }

@_cdecl("fs_last_error")
public func fs_last_error() -> UnsafePointer<CChar> { lastErrorMessage() }

@_cdecl("fs_free")
public func fs_free(_ p: UnsafeMutableRawPointer?) { free(p) }

@_cdecl("fs_status_name")
public func fs_status_name(_ status: Int32) -> UnsafePointer<CChar> {
    switch status {
    case 0: staticCString("FS_OK")
    case 1: staticCString("FS_ERR_ARG")
    case 2: staticCString("FS_ERR_JSON")
    case 3: staticCString("FS_ERR_SCHEMA")
    case 4: staticCString("FS_ERR_NOT_FOUND")
    case 5: staticCString("FS_ERR_CONFLICT")
    case 6: staticCString("FS_ERR_IO")
    case 7: staticCString("FS_ERR_FULL")
    case 8: staticCString("FS_ERR_CORRUPT")
    case 9: staticCString("FS_ERR_BUSY")
    case 10: staticCString("FS_ERR_UPGRADE_REQUIRED")
    case 11: staticCString("FS_ERR_CLOSED")
    case 12: staticCString("FS_ERR_INTERNAL")
    case 13: staticCString("FS_ERR_TOO_BIG")
    case 14: staticCString("FS_ERR_MISUSE")
    default: staticCString("FS_ERR_UNKNOWN")
    }
}
