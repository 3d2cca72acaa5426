// The backup calls of include/fieldsync.h.
import FieldSync

@_cdecl("fs_hub_backup")
public func fs_hub_backup(_ p: OpaquePointer?, _ path: CString?) -> Int32 {
    boundary("fs_hub_backup") { () throws(FieldSyncError) in
        let handle = try hub(p)
        let path = try text(path, "path", limit: 4096)
        try handle.use { h throws(FieldSyncError) in try h.backup(to: path) }
    }
}

@_cdecl("fs_store_backup")
public func fs_store_backup(_ p: OpaquePointer?, _ path: CString?) -> Int32 {
    boundary("fs_store_backup") { () throws(FieldSyncError) in
        let handle = try store(p)
        let path = try text(path, "path", limit: 4096)
        try handle.use { s throws(FieldSyncError) in try s.backup(to: path) }
    }
}
