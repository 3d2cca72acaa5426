// The authentication calls of include/fieldsync.h (docs/SECURITY.md).
import FieldSync
import Glibc

public typealias SignFn = @convention(c) (UnsafeMutableRawPointer?, UnsafePointer<UInt8>?, Int, UnsafeMutablePointer<UInt8>?) -> Int32

@_cdecl("fs_store_pin_hub")
public func fs_store_pin_hub(_ p: OpaquePointer?, _ hubKey: CString?) -> Int32 {
    boundary("fs_store_pin_hub") { () throws(FieldSyncError) in
        let handle = try store(p)
        let key = try text(hubKey, "hub_key")
        try handle.use { s throws(FieldSyncError) in try s.pinHub(key) }
    }
}

@_cdecl("fs_store_set_signer")
public func fs_store_set_signer(_ p: OpaquePointer?, _ publicKey: CString?, _ fn: SignFn?, _ ctx: UnsafeMutableRawPointer?) -> Int32 {
    boundary("fs_store_set_signer") { () throws(FieldSyncError) in
        let handle = try store(p)
        guard let fn else {
            try handle.use { s in s.setSigner(nil) }
            return
        }
        let hex = try text(publicKey, "public_key")
        guard let key = Hex.decode(hex, count: 32) else { throw .arg("public_key must be an Ed25519 public key, 64 hex digits") }
        // A key of small order verifies signatures nobody made.
        if Ed25519.isWeak(publicKey: key) { throw .arg("public_key is a key of small order, which anyone can sign for") }
        nonisolated(unsafe) let ctx = ctx
        let signer = Signer(publicKey: key) { (message) throws(FieldSyncError) -> [UInt8] in
            var signature = [UInt8](repeating: 0, count: 64)
            let status = signature.withUnsafeMutableBufferPointer { sig in
                fn(ctx, message.baseAddress?.assumingMemoryBound(to: UInt8.self), message.count, sig.baseAddress)
            }
            if status != 0 { throw .arg("the signing callback failed (status \(status)); nothing was sent") }
            return signature
        }
        try handle.use { s in s.setSigner(signer) }
    }
}

@_cdecl("fs_store_rotate_key")
public func fs_store_rotate_key(_ p: OpaquePointer?, _ outPublicKey: OutString?) -> Int32 {
    boundary("fs_store_rotate_key") { () throws(FieldSyncError) in
        let out = try output(outPublicKey, "out_public_key")
        let key = try store(p).use { s throws(FieldSyncError) in try s.rotateKey() }
        try give(Array(key.utf8), to: out)
    }
}

@_cdecl("fs_hub_enroll")
public func fs_hub_enroll(_ p: OpaquePointer?, _ enrollment: CString?, _ outResult: OutString?) -> Int32 {
    boundary("fs_hub_enroll") { () throws(FieldSyncError) in
        let out = try output(outResult, "out_result_json")
        let handle = try hub(p)
        let enrollment = try json(enrollment, "enrollment_json")
        try give(handle.use { h throws(FieldSyncError) in try h.enroll(enrollment) }, to: out)
    }
}

@_cdecl("fs_hub_revoke")
public func fs_hub_revoke(_ p: OpaquePointer?, _ device: CString?) -> Int32 {
    boundary("fs_hub_revoke") { () throws(FieldSyncError) in
        let handle = try hub(p)
        let device = try text(device, "device_id")
        try handle.use { h throws(FieldSyncError) in try h.revoke(device: device) }
    }
}

@_cdecl("fs_hub_devices")
public func fs_hub_devices(_ p: OpaquePointer?, _ outDevices: OutString?) -> Int32 {
    boundary("fs_hub_devices") { () throws(FieldSyncError) in
        let out = try output(outDevices, "out_devices_json")
        try give(hub(p).use { h throws(FieldSyncError) in try h.devices() }, to: out)
    }
}
