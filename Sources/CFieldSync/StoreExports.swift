// The store, outbox and audit functions of include/fieldsync.h: check the
// pointers, decode, call the engine, encode. No logic of their own.
import FieldSync

public typealias CString = UnsafePointer<CChar>
public typealias OutString = UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>
public typealias ClockFn = @convention(c) (UnsafeMutableRawPointer?) -> Int64

func store(_ p: OpaquePointer?) throws(FieldSyncError) -> Handle<Store> {
    try handle(p, kind: "store", as: Store.self)
}

@_cdecl("fs_store_open")
public func fs_store_open(_ path: CString?, _ schema: CString?, _ options: CString?,
                          _ outStore: UnsafeMutablePointer<OpaquePointer?>?) -> Int32 {
    boundary("fs_store_open") { () throws(FieldSyncError) in
        let out = try output(outStore, "out_store")
        let path = try text(path, "path", limit: 4096)
        let schema = try Schema(json: json(schema, "schema_json"))
        let engine = try Store(path: path, schema: schema, options: json(options, "options_json", optional: true))
        out.pointee = register(Handle(engine, kind: "store"), kind: "store")
    }
}

@_cdecl("fs_store_close")
public func fs_store_close(_ p: OpaquePointer?) -> Int32 {
    boundary("fs_store_close") { () throws(FieldSyncError) in
        guard p != nil else { return }
        try store(p).close { $0.close() }
    }
}

@_cdecl("fs_store_set_clock")
public func fs_store_set_clock(_ p: OpaquePointer?, _ nowMs: ClockFn?, _ ctx: UnsafeMutableRawPointer?) -> Int32 {
    boundary("fs_store_set_clock") { () throws(FieldSyncError) in
        nonisolated(unsafe) let ctx = ctx
        try store(p).use { s in
            if let nowMs { s.wallClock = { nowMs(ctx) } } else { s.wallClock = systemWallClock }
        }
    }
}

@_cdecl("fs_store_apply")
public func fs_store_apply(_ p: OpaquePointer?, _ action: CString?, _ outResult: OutString?) -> Int32 {
    boundary("fs_store_apply") { () throws(FieldSyncError) in
        let out = try output(outResult, "out_result_json")
        let handle = try store(p)
        let action = try json(action, "action_json")
        try give(handle.use { s throws(FieldSyncError) in try s.apply(action) }, to: out)
    }
}

@_cdecl("fs_store_get")
public func fs_store_get(_ p: OpaquePointer?, _ type: CString?, _ id: CString?, _ outRecord: OutString?) -> Int32 {
    boundary("fs_store_get") { () throws(FieldSyncError) in
        let out = try output(outRecord, "out_record_json")
        let handle = try store(p)
        let type = try text(type, "type"), id = try text(id, "id")
        try give(handle.use { s throws(FieldSyncError) in try s.get(type: type, id: id) }, to: out)
    }
}

@_cdecl("fs_store_query")
public func fs_store_query(_ p: OpaquePointer?, _ query: CString?, _ outRows: OutString?) -> Int32 {
    boundary("fs_store_query") { () throws(FieldSyncError) in
        let out = try output(outRows, "out_rows_json")
        let handle = try store(p)
        let query = try json(query, "query_json")
        try give(handle.use { s throws(FieldSyncError) in try s.query(query) }, to: out)
    }
}

@_cdecl("fs_store_stats")
public func fs_store_stats(_ p: OpaquePointer?, _ outStats: OutString?) -> Int32 {
    boundary("fs_store_stats") { () throws(FieldSyncError) in
        let out = try output(outStats, "out_stats_json")
        try give(store(p).use { s throws(FieldSyncError) in try s.stats() }, to: out)
    }
}

@_cdecl("fs_outbox_count")
public func fs_outbox_count(_ p: OpaquePointer?, _ outCount: UnsafeMutablePointer<Int64>?) -> Int32 {
    boundary("fs_outbox_count") { () throws(FieldSyncError) in
        guard let outCount else { throw .arg("out_count is NULL") }
        outCount.pointee = 0
        outCount.pointee = try store(p).use { s throws(FieldSyncError) in try s.outboxCount() }
    }
}

@_cdecl("fs_outbox_list")
public func fs_outbox_list(_ p: OpaquePointer?, _ filter: CString?, _ outEntries: OutString?) -> Int32 {
    boundary("fs_outbox_list") { () throws(FieldSyncError) in
        let out = try output(outEntries, "out_entries_json")
        let handle = try store(p)
        let filter = try json(filter, "filter_json", optional: true)
        try give(handle.use { s throws(FieldSyncError) in try s.outboxList(filter) }, to: out)
    }
}

@_cdecl("fs_outbox_discard")
public func fs_outbox_discard(_ p: OpaquePointer?, _ key: CString?) -> Int32 {
    boundary("fs_outbox_discard") { () throws(FieldSyncError) in
        let handle = try store(p)
        let key = try text(key, "key")
        try handle.use { s throws(FieldSyncError) in try s.discard(key: key) }
    }
}

@_cdecl("fs_audit_query")
public func fs_audit_query(_ p: OpaquePointer?, _ filter: CString?, _ outRows: OutString?) -> Int32 {
    boundary("fs_audit_query") { () throws(FieldSyncError) in
        let out = try output(outRows, "out_rows_json")
        let handle = try store(p)
        let filter = try json(filter, "filter_json", optional: true)
        try give(handle.use { s throws(FieldSyncError) in JSON.array(try s.audit(filter).map(\.json)) }, to: out)
    }
}

@_cdecl("fs_store_hygiene")
public func fs_store_hygiene(_ p: OpaquePointer?, _ outReport: OutString?) -> Int32 {
    boundary("fs_store_hygiene") { () throws(FieldSyncError) in
        let out = try output(outReport, "out_report_json")
        try give(store(p).use { s throws(FieldSyncError) in try s.hygiene() }, to: out)
    }
}

@_cdecl("fs_fetch_request")
public func fs_fetch_request(_ p: OpaquePointer?, _ refs: CString?, _ outRequest: OutString?) -> Int32 {
    boundary("fs_fetch_request") { () throws(FieldSyncError) in
        let out = try output(outRequest, "out_request_json")
        let handle = try store(p)
        let refs = try json(refs, "refs_json")
        try give(handle.use { s throws(FieldSyncError) in try s.fetchRequestText(refs) }, to: out)
    }
}
