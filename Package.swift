// swift-tools-version:6.0
// libfieldsync: the engine (FieldSync) behind a thin C boundary (CFieldSync).
// Build the shipped library with `make build`: it adds -static-stdlib (which
// would break `swift test` here) and the linker flags of the shipped .so.
import PackageDescription

let package = Package(
    name: "fieldsync",
    products: [
        .library(name: "fieldsync", type: .dynamic, targets: ["CFieldSync"]),
    ],
    targets: [
        .systemLibrary(name: "CSQLite", pkgConfig: "sqlite3", providers: [.apt(["libsqlite3-dev"])]),
        .systemLibrary(name: "CJansson", pkgConfig: "jansson", providers: [.apt(["libjansson-dev"])]),
        .systemLibrary(name: "CCrypto", pkgConfig: "libcrypto", providers: [.apt(["libssl-dev"])]),
        // The public header, so status codes, limits and versions have one source.
        .systemLibrary(name: "CFieldSyncABI"),
        .target(name: "FieldSync", dependencies: ["CSQLite", "CJansson", "CCrypto", "CFieldSyncABI"]),
        // No unsafeFlags, so that an app's package can depend on this one: the
        // shipped library's linker flags (lld, the version script, the SONAME)
        // are on `make build`'s command line.
        .target(name: "CFieldSync", dependencies: ["FieldSync", "CFieldSyncABI"], exclude: ["exports.map"]),
        .testTarget(name: "FieldSyncTests", dependencies: ["FieldSync", "CJansson"]),
    ]
)
