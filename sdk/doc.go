// Package sdk is the public API for decoder and action plugin authors.
//
// It imports nothing from the server. The decoder contract (Request, Result,
// Decoder) is filled in by the decoders issue; for now the package only
// reserves the module path so that core and plugins can depend on it.
package sdk

// Version is the plugin protocol version carried in the plugin handshake.
const Version = 1
