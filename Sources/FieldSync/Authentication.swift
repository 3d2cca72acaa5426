// Authenticated sync, the hub's side (docs/SECURITY.md): a request is
// verified against the device registry before anything in it is decided,
// and every response is signed with the hub's key, which devices pin.

/// The `auth` option of hubs and stores: "on" (the default) or "off".
func authOption(_ opts: JSONObject, in context: String) throws(FieldSyncError) -> Bool {
    guard let value = opts["auth"] else { return true }
    switch value.string {
    case "on": return true
    case "off": return false
    default: throw .arg("\(context): \"auth\" must be \"on\" or \"off\", got \(value.text)")
    }
}

extension Hub {
    /// Each way a request is refused before anything in it is decided, counted
    /// apart in fs_hub_stats ("auth_refused_<code>").
    static let refusalCodes = ["unsigned", "unknown_device", "revoked", "bad_signature", "instance_mismatch"]

    /// Who sent a request that verified, and what it vouched for.
    struct Principal {
        var enrollment: Enrollment
        var credentials: Wire.Credentials
    }

    /// The hub's public key, hex: what a device pins (fs_store_pin_hub).
    package var publicKey: String { Hex.encode(key.publicKey) }

    /// A request as it arrived (the text fs_hub_handle gets, byte for byte):
    /// authenticated when the hub authenticates, handled, and answered with
    /// a signed response.
    package func handle(text: UnsafeRawBufferPointer) throws(FieldSyncError) -> [UInt8] {
        guard let base = text.baseAddress, !text.isEmpty else { throw .json("request_json is not valid JSON: it is empty") }
        let json = try JSON.parse(bytes: base, count: text.count, what: "request_json", limit: Limits.maxRequestBytes,
                                  depth: Limits.maxMessageDepth)
        // The answer names the request it answers: the SHA-256 its signature
        // covers (of the whole text when unsigned); a device believes no other.
        let split = Wire.Signature.split(text)
        let digest: String
        if let split {
            digest = try Wire.Signature.digest(split.signed)
        } else {
            digest = try Wire.Signature.digest(UnsafeRawBufferPointer(start: base, count: Wire.Signature.trimmedCount(text)))
        }
        var principal: Principal?
        if authenticates {
            switch try authenticate(json, signature: split?.signature, digest: digest) {
            case .success(let p): principal = p
            case .failure(let refusal): return try signed(refusal.response, answering: digest)
            }
        }
        return try signed(handle(json, principal: principal), answering: digest)
    }

    /// A refusal is an answer, not an error: the device learns why (signed,
    /// so it can believe it), the operator sees it counted and logged.
    struct Refusal: Error {
        var response: JSON
    }

    private func authenticate(_ json: JSON, signature: [UInt8]?, digest: String) throws(FieldSyncError) -> Result<Principal, Refusal> {
        guard let r = json.object else { throw .arg("request must be a JSON object, got \(json.kind)") }
        let m = Wire.Members("request")
        let proto = try m.requiredInt(r["protocol"], "protocol", 1...Int64.max)
        guard let device = try m.text(r["device_id"], "device_id", maxBytes: 64), isDeviceId(device) else {
            throw .arg("request: \"device_id\" is missing or invalid")
        }
        let batch = try m.requiredText(r["batch"], "batch")
        let now = HybridClock.clampWall(wallClock())
        func refuse(_ code: String, _ message: String) throws(FieldSyncError) -> Result<Principal, Refusal> {
            try storage.logRefusal(device: device, code: code, message: message, at: now)
            let answer = Wire.Response.error(code, message, proto: min(proto, Wire.version), device: device, batch: batch, serverTime: now)
            return .failure(Refusal(response: answer.json))
        }
        guard let signature else {
            return try refuse("unsigned", "the request carries no signature; this hub authenticates every device (docs/SECURITY.md)")
        }
        guard let enrolled = try storage.enrollment(device) else {
            return try refuse("unknown_device", "device '\(device)' is not enrolled at this hub")
        }
        if enrolled.revoked { return try refuse("revoked", "device '\(device)' was revoked") }
        guard let publicKey = Hex.decode(enrolled.publicKey, count: Ed25519.publicKeyBytes) else {
            throw .corrupt("fs_devices.public_key of \(device) is not 32 bytes of hex")
        }
        guard Ed25519.verify(publicKey: publicKey, signature: signature, message: Wire.Signature.message(digest: digest)) else {
            return try refuse("bad_signature", "the request's signature does not verify with the key enrolled for '\(device)'")
        }
        let credentials = try Wire.Credentials(r["auth"])
        if let bound = enrolled.instance, bound != credentials.instance {
            return try refuse("instance_mismatch", "device '\(device)' is enrolled for store instance \(bound); this request comes from "
                              + "instance \(credentials.instance) (a copied store or a second device with the same id)")
        }
        if let head = credentials.head {
            let message = Wire.Signature.auditHead(device: device, auditId: head.auditId, hash: head.hash)
            guard Ed25519.verify(publicKey: publicKey, signature: head.signature, message: message) else {
                return try refuse("bad_signature", "the signature of audit head \(head.auditId) does not verify with the key enrolled for '\(device)'")
            }
        }
        return .success(Principal(enrollment: enrolled, credentials: credentials))
    }

    /// The response as sent: the engine's text with the hub's signature.
    private func signed(_ response: JSON, answering digest: String) throws(FieldSyncError) -> [UInt8] {
        var response = response
        if var o = response.object {
            o["request_hash"] = .string(digest)
            response = .object(o)
        }
        var bytes = response.bytes
        try Wire.Signature.sign(&bytes, with: Signer(key: key))
        return bytes
    }

    // MARK: the registry, for the operator

    /// Enrolls a device (or re-enrolls it: a new key rotates, a new scope
    /// replaces the old). Returns what the device needs: the hub's key.
    package func enroll(_ json: JSON) throws(FieldSyncError) -> JSON {
        guard let o = json.object else { throw .arg("enrollment must be a JSON object, got \(json.kind)") }
        try checkKeys(o, allowed: ["device_id", "public_key", "instance", "scope", "write"], in: "enrollment", code: FieldSyncError.arg)
        guard let device = o["device_id"]?.string, isDeviceId(device) else {
            throw .arg("enrollment: \"device_id\" must be 1 to 64 characters of [A-Za-z0-9_.:-]")
        }
        guard let keyText = o["public_key"]?.string, let keyBytes = Hex.decode(keyText, count: Ed25519.publicKeyBytes) else {
            throw .arg("enrollment: \"public_key\" must be the device's Ed25519 public key, 64 hex digits (fs_store_stats \"public_key\")")
        }
        guard !Ed25519.isWeak(publicKey: keyBytes) else {
            throw .arg("enrollment: \"public_key\" is a point of small order, for which anyone can make signatures: not a device's key")
        }
        var instance: String?
        if let i = o["instance"], !i.isNull {
            guard let s = i.string, isInstanceId(s) else { throw .arg("enrollment: \"instance\" must be a store's instance_id (32 hex digits)") }
            instance = s
        }
        var scope: [String: JSONObject]?
        if let s = o["scope"], !s.isNull {
            scope = try schema.checkedScope(s, clientVersion: schema.version, in: "enrollment")
        }
        var write = true
        if let w = o["write"] {
            guard let b = w.bool else { throw .arg("enrollment: \"write\" must be true or false") }
            write = b
        }
        let now = HybridClock.clampWall(wallClock())
        let e = Enrollment(device: device, publicKey: Hex.encode(keyBytes), instance: instance, scope: scope, write: write, revoked: false)
        let rotated = try storage.db.transaction { () throws(FieldSyncError) -> Bool in try storage.enroll(e, at: now) }
        return .object(["device_id": .string(device), "hub_key": .string(publicKey), "rotated": .bool(rotated)])
    }

    package func revoke(device: String) throws(FieldSyncError) {
        guard isDeviceId(device) else { throw .arg("device_id must be 1 to 64 characters of [A-Za-z0-9_.:-]") }
        let now = HybridClock.clampWall(wallClock())
        try storage.db.transaction { () throws(FieldSyncError) in try storage.revoke(device, at: now) }
    }

    package func devices() throws(FieldSyncError) -> JSON { try storage.devices() }
}

/// A store instance id: 16 random bytes in hex, made with the store file.
func isInstanceId(_ s: String) -> Bool {
    s.utf8.count == 32 && Hex.decode(s, count: 16) != nil
}
