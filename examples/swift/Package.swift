// swift-tools-version:6.0
// A Swift app (a mobile shell's core, say) that depends on fieldsync as a
// package and drives the engine through its C header, as every other host
// does. `swift run` here builds the library from source along with the app.
import PackageDescription

let package = Package(
    name: "FieldApp",
    dependencies: [.package(name: "fieldsync", path: "../..")],
    targets: [
        .executableTarget(name: "FieldApp", dependencies: [.product(name: "fieldsync", package: "fieldsync")]),
    ]
)
