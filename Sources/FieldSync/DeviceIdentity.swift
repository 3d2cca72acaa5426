// Authenticated sync, the device's side (docs/SECURITY.md): the store's key
// pair and instance id, made with the file; the hub key pinned at
// enrollment; requests signed, responses verified before anything in them
// is believed.

/// What a store knows about who it is and whom it trusts.
struct DeviceIdentity {
    /// The key in the store file (also what signs unless the host set a signer).
    var key: SigningKey
    var signer: Signer
    /// 16 random bytes made with the file, in hex: a copy of the file shares
    /// it, a second store given the same device id does not.
    var instance: String
    /// Whether requests are signed and responses must verify (the `auth`
    /// store option).
    var authenticates: Bool

    /// Reads the identity of a store file, making what a file from before
    /// keys existed lacks (inside the caller's transaction).
    static func load(db: Connection, authenticates: Bool) throws(FieldSyncError) -> DeviceIdentity {
        let key: SigningKey
        if let stored = try Store.meta("signing_key", db: db)?.string {
            key = try SigningKey(stored: stored)
        } else {
            key = try SigningKey.generate()
            try db.run("INSERT INTO fs_meta(key, value) VALUES('signing_key', ?)", [.text(Hex.encode(key.seed))])
        }
        let instance: String
        if let stored = try Store.meta("instance_id", db: db)?.string {
            guard isInstanceId(stored) else { throw .corrupt("fs_meta.instance_id is not 32 hex digits") }
            instance = stored
        } else {
            instance = Hex.encode(try Ed25519.randomBytes(16))
            try db.run("INSERT INTO fs_meta(key, value) VALUES('instance_id', ?)", [.text(instance)])
        }
        return DeviceIdentity(key: key, signer: Signer(key: key), instance: instance, authenticates: authenticates)
    }
}

extension Store {
    package var publicKey: String { Hex.encode(identity.signer.publicKey) }
    package var instanceId: String { identity.instance }

    /// The hub key this store trusts (pinned by fs_store_pin_hub), read from
    /// the file so every handle on it agrees.
    func pinnedHubKey() throws(FieldSyncError) -> [UInt8]? {
        guard let text = try Store.meta("hub_key", db: db)?.string else { return nil }
        guard let key = Hex.decode(text, count: Ed25519.publicKeyBytes) else { throw .corrupt("fs_meta.hub_key is not 64 hex digits") }
        return key
    }

    /// Pins the hub's public key (what fs_hub_enroll returned): from now on
    /// only responses signed with it are believed. Pinning another key later
    /// is how a device moves to a new hub.
    package func pinHub(_ hex: String) throws(FieldSyncError) {
        guard let key = Hex.decode(hex, count: Ed25519.publicKeyBytes) else {
            throw .arg("hub_key must be the hub's Ed25519 public key, 64 hex digits (fs_hub_stats \"public_key\")")
        }
        guard !Ed25519.isWeak(publicKey: key) else {
            throw .arg("hub_key is a point of small order, for which anyone can make signatures: not a hub's key")
        }
        try write { () throws(FieldSyncError) in try setMeta("hub_key", .string(Hex.encode(key))) }
    }

    /// Signs with the host's callback from now on; nil goes back to the key
    /// in the file.
    package func setSigner(_ signer: Signer?) {
        identity.signer = signer ?? Signer(key: identity.key)
    }

    /// Replaces the key in the file with a new one and returns its public
    /// half, to enroll at the hub (a rotation: requests signed with it are
    /// refused until the hub has it). A host signer set on this handle is dropped.
    package func rotateKey() throws(FieldSyncError) -> String {
        let key = try SigningKey.generate()
        try write { () throws(FieldSyncError) in try setMeta("signing_key", .string(Hex.encode(key.seed))) }
        identity.key = key
        identity.signer = Signer(key: key)
        return Hex.encode(key.publicKey)
    }

    /// The credentials a request carries, with the head of the audit rows
    /// it sends signed (nil when the store does not authenticate).
    func credentials(head: (auditId: Int64, hash: String)?) throws(FieldSyncError) -> Wire.Credentials? {
        guard identity.authenticates else { return nil }
        // Another handle on the file may have rotated the key (read in the
        // prepare's transaction, so the head and the request agree).
        if !identity.signer.external, let stored = try Store.meta("signing_key", db: db)?.string, stored != Hex.encode(identity.key.seed) {
            identity.key = try SigningKey(stored: stored)
            identity.signer = Signer(key: identity.key)
        }
        let signed = try head.map { (h) throws(FieldSyncError) -> Wire.Credentials.Head in
            let signature = try identity.signer.sign(Wire.Signature.auditHead(device: deviceId, auditId: h.auditId, hash: h.hash))
            return Wire.Credentials.Head(auditId: h.auditId, hash: h.hash, signature: signature)
        }
        return Wire.Credentials(instance: identity.instance, head: signed)
    }

    /// How many recent requests a response may still answer (a late answer
    /// to an older batch is applied as any duplicate delivery is).
    static let rememberedRequests = 16

    /// The request as sent: signed, and its digest remembered under its
    /// batch (inside the prepare's transaction), so that only the hub's
    /// answer to this very text is believed — not an old answer replayed to
    /// a store restored from a copy, whose batch numbers repeat.
    func signed(_ text: [UInt8], batch: Int64) throws(FieldSyncError) -> [UInt8] {
        guard identity.authenticates else { return text }
        var text = text
        let digest = try Wire.Signature.sign(&text, with: identity.signer)
        var ring = try Store.meta("request_hashes", db: db)?.string.flatMap { try? JSON.parse($0, what: "request_hashes").object } ?? [:]
        ring[String(batch)] = .string(digest)
        let numbers = ring.map(\.key).compactMap { Int64($0) }.sorted(by: >)
        for old in numbers.dropFirst(Store.rememberedRequests) { ring[String(old)] = nil }
        try setMeta("request_hashes", .string(JSON.object(ring).text))
        return text
    }

    /// The digest of the request this store sent as batch `number`, if recent.
    func requestHash(batch number: Int64) throws(FieldSyncError) -> String? {
        guard let text = try Store.meta("request_hashes", db: db)?.string,
              let ring = try? JSON.parse(text, what: "request_hashes").object else { return nil }
        return ring[String(number)]?.string
    }

    /// A response as it arrived (what fs_sync_receive gets): verified with
    /// the pinned hub key before anything in it is read, then applied.
    package func receive(text: UnsafeRawBufferPointer) throws(FieldSyncError) -> JSON {
        guard let base = text.baseAddress, !text.isEmpty else { throw .json("response_json is not valid JSON: it is empty") }
        let json = try JSON.parse(bytes: base, count: text.count, what: "response_json", limit: Limits.maxResponseBytes,
                                  depth: Limits.maxMessageDepth)
        if identity.authenticates {
            guard let hubKey = try pinnedHubKey() else {
                throw .auth("no hub key is pinned: enroll this device at its hub and pin the key fs_hub_enroll returned "
                            + "(fs_store_pin_hub), or open the store with \"auth\": \"off\"; nothing was changed")
            }
            guard let (signed, signature) = Wire.Signature.split(text) else {
                throw .auth("the response is not signed; nothing was changed")
            }
            guard Ed25519.verify(publicKey: hubKey, signature: signature, message: Wire.Signature.message(digest: try Wire.Signature.digest(signed))) else {
                throw .auth("the response's signature does not verify with the pinned hub key; nothing was changed")
            }
            // Signed by the hub, but for which request? Only an answer to a
            // text this store sent (and recently) is believed.
            let number = json["batch"]?.string.flatMap { Wire.batchNumber($0, device: deviceId) }
            let sent = try number.flatMap { (n) throws(FieldSyncError) -> String? in try requestHash(batch: n) }
            guard let sent, json["request_hash"]?.string == sent else {
                throw .auth("the response does not answer a request this store sent recently (a replayed or misrouted answer); nothing was changed")
            }
        }
        return try receive(json)
    }
}
