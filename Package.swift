// swift-tools-version:6.0
// libfieldsync: the engine (FieldSync) behind a thin C boundary (CFieldSync).
// Build the shipped library with `make build` (adds -static-stdlib, which must
// stay off this file: here it would break `swift test`).
import PackageDescription

let exportsMap = Context.packageDirectory + "/Sources/CFieldSync/exports.map"

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
        .target(
            name: "CFieldSync",
            dependencies: ["FieldSync", "CFieldSyncABI"],
            // lld, because GNU ld leaves the engine's cross-module symbols in
            // .dynsym (as LOCAL entries); with lld only the fs_* functions appear.
            linkerSettings: [.unsafeFlags([
                "-use-ld=lld",
                "-Xlinker", "--version-script=\(exportsMap)",
                "-Xlinker", "-soname=libfieldsync.so.1",
            ])]
        ),
        .testTarget(name: "FieldSyncTests", dependencies: ["FieldSync", "CJansson"]),
    ]
)
