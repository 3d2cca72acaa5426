// The sync steps and the hub of include/fieldsync.h: check the pointers,
// decode, call the engine, encode. No logic of their own.
import FieldSync
import Glibc

@_cdecl("fs_sync_prepare")
public func fs_sync_prepare(_ p: OpaquePointer?, _ outRequest: OutString?, _ outWait: UnsafeMutablePointer<Int64>?) -> Int32 {
    boundary("fs_sync_prepare") { () throws(FieldSyncError) in
        let out = try output(outRequest, "out_request_json")
        guard let outWait else { throw .arg("out_wait_ms is NULL") }
        outWait.pointee = 0
        let (request, wait) = try store(p).use { s throws(FieldSyncError) in try s.prepareText() }
        if let request { try give(request, to: out) }
        outWait.pointee = wait
    }
}

@_cdecl("fs_sync_receive")
public func fs_sync_receive(_ p: OpaquePointer?, _ response: CString?, _ outSummary: OutString?) -> Int32 {
    boundary("fs_sync_receive") { () throws(FieldSyncError) in
        let out = try output(outSummary, "out_summary_json")
        let handle = try store(p)
        guard let response else { throw .arg("response_json is NULL") }
        let text = UnsafeRawBufferPointer(start: response, count: strlen(response))
        try give(handle.use { s throws(FieldSyncError) in try s.receive(text: text) }, to: out)
    }
}

@_cdecl("fs_sync_fail")
public func fs_sync_fail(_ p: OpaquePointer?, _ reason: CString?) -> Int32 {
    boundary("fs_sync_fail") { () throws(FieldSyncError) in
        let handle = try store(p)
        let reason = try reason.map { (r) throws(FieldSyncError) -> String in try text(r, "reason", limit: 4096) } ?? "transport failed"
        try handle.use { s throws(FieldSyncError) in try s.fail(reason: reason) }
    }
}

@_cdecl("fs_sync_connectivity")
public func fs_sync_connectivity(_ p: OpaquePointer?, _ up: Int32) -> Int32 {
    boundary("fs_sync_connectivity") { () throws(FieldSyncError) in
        try store(p).use { s throws(FieldSyncError) in try s.connectivity(up: up != 0) }
    }
}

func hub(_ p: OpaquePointer?) throws(FieldSyncError) -> Handle<Hub> {
    try handle(p, kind: "hub", as: Hub.self)
}

@_cdecl("fs_hub_open")
public func fs_hub_open(_ path: CString?, _ schema: CString?, _ options: CString?,
                        _ outHub: UnsafeMutablePointer<OpaquePointer?>?) -> Int32 {
    boundary("fs_hub_open") { () throws(FieldSyncError) in
        let out = try output(outHub, "out_hub")
        // NULL for a PostgreSQL hub (its options name its database).
        let path = try path.map { (p) throws(FieldSyncError) -> String in try text(p, "path", limit: 4096) }
        let schema = try Schema(json: json(schema, "schema_json"))
        let engine = try Hub(path: path, schema: schema, options: json(options, "options_json", optional: true))
        out.pointee = register(Handle(engine, kind: "hub"), kind: "hub")
    }
}

@_cdecl("fs_hub_close")
public func fs_hub_close(_ p: OpaquePointer?) -> Int32 {
    boundary("fs_hub_close") { () throws(FieldSyncError) in
        guard p != nil else { return }
        try hub(p).close { $0.close() }
    }
}

@_cdecl("fs_hub_set_clock")
public func fs_hub_set_clock(_ p: OpaquePointer?, _ nowMs: ClockFn?, _ ctx: UnsafeMutableRawPointer?) -> Int32 {
    boundary("fs_hub_set_clock") { () throws(FieldSyncError) in
        nonisolated(unsafe) let ctx = ctx
        try hub(p).use { h in
            if let nowMs { h.wallClock = { nowMs(ctx) } } else { h.wallClock = systemWallClock }
        }
    }
}

@_cdecl("fs_hub_handle")
public func fs_hub_handle(_ p: OpaquePointer?, _ request: CString?, _ outResponse: OutString?) -> Int32 {
    boundary("fs_hub_handle") { () throws(FieldSyncError) in
        let out = try output(outResponse, "out_response_json")
        let handle = try hub(p)
        guard let request else { throw .arg("request_json is NULL") }
        let text = UnsafeRawBufferPointer(start: request, count: strlen(request))
        try give(handle.use { h throws(FieldSyncError) in try h.handle(text: text) }, to: out)
    }
}

@_cdecl("fs_hub_query")
public func fs_hub_query(_ p: OpaquePointer?, _ query: CString?, _ outRows: OutString?) -> Int32 {
    boundary("fs_hub_query") { () throws(FieldSyncError) in
        let out = try output(outRows, "out_rows_json")
        let handle = try hub(p)
        let query = try json(query, "query_json")
        try give(handle.use { h throws(FieldSyncError) in try h.query(query) }, to: out)
    }
}

@_cdecl("fs_hub_audit_query")
public func fs_hub_audit_query(_ p: OpaquePointer?, _ filter: CString?, _ outRows: OutString?) -> Int32 {
    boundary("fs_hub_audit_query") { () throws(FieldSyncError) in
        let out = try output(outRows, "out_rows_json")
        let handle = try hub(p)
        let filter = try json(filter, "filter_json", optional: true)
        try give(handle.use { h throws(FieldSyncError) in try h.auditQuery(filter) }, to: out)
    }
}

@_cdecl("fs_hub_stats")
public func fs_hub_stats(_ p: OpaquePointer?, _ outStats: OutString?) -> Int32 {
    boundary("fs_hub_stats") { () throws(FieldSyncError) in
        let out = try output(outStats, "out_stats_json")
        try give(hub(p).use { h throws(FieldSyncError) in try h.stats() }, to: out)
    }
}

public typealias ResolverFn = @convention(c) (UnsafeMutableRawPointer?, UnsafePointer<CChar>?, UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> Int32

@_cdecl("fs_hub_set_resolver")
public func fs_hub_set_resolver(_ p: OpaquePointer?, _ name: CString?, _ fn: ResolverFn?, _ ctx: UnsafeMutableRawPointer?) -> Int32 {
    boundary("fs_hub_set_resolver") { () throws(FieldSyncError) in
        let handle = try hub(p)
        let name = try text(name, "name")
        if name.isEmpty { throw .arg("name is empty") }
        nonisolated(unsafe) let ctx = ctx
        try handle.use { h in
            guard let fn else { h.resolvers[name] = nil; return }
            h.resolvers[name] = { conflict in
                var answer: UnsafeMutablePointer<CChar>?
                let status = conflict.text.withCString { fn(ctx, $0, &answer) }
                // The answer is malloc'd by the callback and ours to free, even on failure.
                defer { free(answer) }
                guard status == 0 else {
                    return .failure(.conflict("resolver '\(name)' returned status \(status)"))
                }
                guard let answer else { return .failure(.arg("resolver '\(name)' returned FS_OK but no value")) }
                return Result { () throws(FieldSyncError) -> JSON in
                    try JSON.parse(bytes: answer, count: strlen(answer), what: "resolver '\(name)' answer")
                }
            }
        }
    }
}
