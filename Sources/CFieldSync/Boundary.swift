// The machinery every exported function shares: the thread-local error
// message, the registry of live handles, and conversion of C arguments.
// Nothing here knows about sync, merge or SQL.
import FieldSync
import Glibc
import Synchronization

// MARK: - Errors

/// Thread-local message of the last call (fs_last_error); malloc'd, freed on
/// replacement and at thread exit.
private let errorKey: pthread_key_t = {
    var key = pthread_key_t()
    pthread_key_create(&key) { free($0) }
    return key
}()

private func setLastError(_ message: String?) {
    let old = pthread_getspecific(errorKey)
    if old == nil && message == nil { return }
    free(old)
    pthread_setspecific(errorKey, message.flatMap { strdup($0) })
}

func lastErrorMessage() -> UnsafePointer<CChar> {
    if let p = pthread_getspecific(errorKey) { return UnsafePointer(p.assumingMemoryBound(to: CChar.self)) }
    return staticCString("")
}

func staticCString(_ s: StaticString) -> UnsafePointer<CChar> {
    UnsafeRawPointer(s.utf8Start).assumingMemoryBound(to: CChar.self)
}

/// Runs an exported function's body: a thrown error becomes its status code
/// and the thread's last-error message; success clears the message.
func boundary(_ function: StaticString, _ body: () throws(FieldSyncError) -> Void) -> Int32 {
    do {
        try body()
        setLastError(nil)
        return 0
    } catch {
        setLastError("\(function): \(error.message)")
        return error.status
    }
}

// MARK: - Handles

/// What an fs_store* / fs_hub* points to. Closing drops the engine but keeps
/// this object alive and registered, so a later call with the stale pointer
/// answers FS_ERR_CLOSED instead of touching freed memory.
final class Handle<Engine: AnyObject>: @unchecked Sendable {
    private let engine: Mutex<Engine?>
    private let kind: String
    /// The thread inside a call on this handle (0: none). A clock or resolver
    /// callback runs with the lock held; if it calls back into the same
    /// handle, locking again would abort the process, so it gets FS_ERR_MISUSE.
    private let owner = Atomic<UInt>(0)

    init(_ engine: consuming sending Engine, kind: String) {
        self.engine = Mutex(engine)
        self.kind = kind
    }

    /// Runs `body` with the engine, serialised with every other call on this handle.
    func use<R: Sendable>(_ body: (Engine) throws(FieldSyncError) -> R) throws(FieldSyncError) -> R {
        let me = try enter()
        return try engine.withLock { (e: inout Engine?) throws(FieldSyncError) -> sending R in
            owner.store(me, ordering: .relaxed)
            defer { owner.store(0, ordering: .relaxed) }
            guard let live = e else { throw .closed("the \(kind) handle was closed") }
            return try body(live)
        }
    }

    func close(_ shutdown: (Engine) -> Void) throws(FieldSyncError) {
        let me = try enter()
        try engine.withLock { (e: inout Engine?) throws(FieldSyncError) in
            owner.store(me, ordering: .relaxed)
            defer { owner.store(0, ordering: .relaxed) }
            guard let live = e else { throw .closed("the \(kind) handle was already closed") }
            shutdown(live)
            e = nil
        }
    }

    /// The calling thread's id, after checking it is not already inside a
    /// call on this handle. Only this thread can have stored its own id, so a
    /// relaxed read is enough to recognise re-entry.
    private func enter() throws(FieldSyncError) -> UInt {
        let me = UInt(pthread_self())
        if owner.load(ordering: .relaxed) == me {
            throw .misuse("a callback called back into the fs_\(kind) handle that is calling it; a clock or resolver callback must not use its own handle")
        }
        return me
    }
}

/// Every handle ever given out, by address and kind: a pointer that is not in
/// it (a hub passed as a store, a stray pointer) is refused, not dereferenced.
private let registry = Mutex<[UInt: String]>([:])

func register<Engine>(_ handle: Handle<Engine>, kind: String) -> OpaquePointer {
    let pointer = Unmanaged.passRetained(handle).toOpaque()
    registry.withLock { $0[UInt(bitPattern: pointer)] = kind }
    return OpaquePointer(pointer)
}

func handle<Engine>(_ pointer: OpaquePointer?, kind: String, as: Engine.Type) throws(FieldSyncError) -> Handle<Engine> {
    guard let pointer else { throw .arg("\(kind) is NULL") }
    let raw = UnsafeMutableRawPointer(pointer)
    let known = registry.withLock { $0[UInt(bitPattern: raw)] }
    guard known == kind else { throw .arg("the pointer given as \(kind) is not an fs_\(kind) handle from this library") }
    return Unmanaged<Handle<Engine>>.fromOpaque(raw).takeUnretainedValue()
}

// MARK: - Arguments

/// A borrowed C string argument as UTF-8 text.
func text(_ p: UnsafePointer<CChar>?, _ name: String, limit: Int = Limits.maxIDBytes) throws(FieldSyncError) -> String {
    guard let p else { throw .arg("\(name) is NULL") }
    let n = strlen(p)
    if n > limit { throw .tooBig("\(name) is \(n) bytes; the limit is \(limit)") }
    guard let s = String(validatingCString: p) else { throw .json("\(name) is not valid UTF-8") }
    return s
}

/// A borrowed JSON argument; NULL is `.null` when the argument is optional.
/// Arguments nest at most FS_MAX_DEPTH levels; sync messages, which wrap
/// arguments' values, FS_MAX_MESSAGE_DEPTH.
func json(_ p: UnsafePointer<CChar>?, _ name: String, optional: Bool = false,
          limit: Int = Limits.maxJSONBytes, depth: Int = Limits.maxDepth) throws(FieldSyncError) -> JSON {
    guard let p else {
        if optional { return .null }
        throw .arg("\(name) is NULL")
    }
    return try JSON.parse(bytes: p, count: strlen(p), what: name, limit: limit, depth: depth)
}

/// Checks an out-parameter before any work is done and clears it, so that a
/// failed call leaves NULL behind.
func output<T>(_ out: UnsafeMutablePointer<T?>?, _ name: String) throws(FieldSyncError) -> UnsafeMutablePointer<T?> {
    guard let out else { throw .arg("\(name) is NULL") }
    out.pointee = nil
    return out
}

/// JSON text in malloc'd memory, for the caller to release with fs_free.
func give(_ value: JSON, to out: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>) throws(FieldSyncError) {
    guard let p = value.writer.takeCString() else { throw .internal("out of memory") }
    out.pointee = p
}

/// JSON text the engine wrote already, copied into malloc'd memory.
func give(_ text: [UInt8], to out: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>) throws(FieldSyncError) {
    var writer = ByteWriter(capacity: text.count + 1)
    writer.append(text)
    guard let p = writer.takeCString() else { throw .internal("out of memory") }
    out.pointee = p
}
