package transport

import "context"

// Transport kinds, as recorded in PeerInfo and in registrations.
const (
	TransportUDP  = "udp"
	TransportDTLS = "dtls"
)

// PeerInfo says how the peer of a request is connected. Handlers read it
// from the request context with PeerFrom: it is how the registration
// interface knows that a Register came over DTLS and which PSK identity
// the device proved it holds.
type PeerInfo struct {
	Transport string // TransportUDP or TransportDTLS
	// Identity is the PSK identity a DTLS peer completed its handshake
	// with; "" over UDP.
	Identity string
	// Owner is what the PSKStore said about Identity when the handshake
	// ran.
	Owner PSKOwner
}

type peerInfoKey struct{}

// PeerFrom returns the PeerInfo of the peer that ctx (a request or conn
// context) belongs to. A context without one reports TransportUDP: this
// package's UDP Server does not mark its peers, and neither do go-coap's
// stock UDP servers used in tests.
func PeerFrom(ctx context.Context) PeerInfo {
	if pi, ok := ctx.Value(peerInfoKey{}).(*PeerInfo); ok {
		return *pi
	}
	return PeerInfo{Transport: TransportUDP}
}

// LookupPeer is PeerFrom that also says whether ctx carried a PeerInfo.
func LookupPeer(ctx context.Context) (PeerInfo, bool) {
	if pi, ok := ctx.Value(peerInfoKey{}).(*PeerInfo); ok {
		return *pi, true
	}
	return PeerInfo{Transport: TransportUDP}, false
}

// WithPeerInfo returns a copy of ctx that carries pi, for transports other
// than this package's and for tests of handlers.
func WithPeerInfo(ctx context.Context, pi PeerInfo) context.Context {
	return context.WithValue(ctx, peerInfoKey{}, &pi)
}

// PSKOwner names the device a PSK identity belongs to.
type PSKOwner struct {
	Tenant, DeviceID, Endpoint string
}

// PSKStore finds the pre-shared key of a PSK identity while a DTLS
// handshake runs. Any error fails the handshake (an unknown identity
// should wrap store.ErrNotFound; other errors are logged as lookup
// failures). The DTLS server does not keep or log the key; the store
// should return a copy. It is called concurrently.
type PSKStore interface {
	PSK(ctx context.Context, identity string) (key []byte, owner PSKOwner, err error)
}

// PSKFunc adapts a function to PSKStore.
type PSKFunc func(ctx context.Context, identity string) ([]byte, PSKOwner, error)

// PSK calls f.
func (f PSKFunc) PSK(ctx context.Context, identity string) ([]byte, PSKOwner, error) {
	return f(ctx, identity)
}
