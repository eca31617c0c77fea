package transport

import (
	"bytes"
	"crypto/sha256"
	"encoding/gob"
	"errors"
	"fmt"
	"sync"

	"github.com/pion/dtls/v3"
	"github.com/pion/dtls/v3/pkg/crypto/ciphersuite"
	"github.com/pion/dtls/v3/pkg/crypto/prf"
	"github.com/pion/dtls/v3/pkg/protocol"
	"github.com/pion/dtls/v3/pkg/protocol/recordlayer"
	"github.com/pion/transport/v5/replaydetector"
)

// recordLayer protects the application data of an established session
// with the keys its handshake agreed. pion runs the handshake; after it,
// the session's records are sealed and opened here, so that a session
// costs its keys and counters instead of a pion conn with its goroutines
// and read buffers. It is safe for concurrent use.
type recordLayer struct {
	suite aead
	// ownCID is the Connection ID the client puts in its records (we
	// chose it), peerCID the one we put in ours (the client chose it);
	// nil when not negotiated.
	ownCID, peerCID []byte

	wmu sync.Mutex
	seq uint64 // our next sequence number in epoch 1

	rmu    sync.Mutex
	replay replaydetector.ReplayDetector
	// cutoff: the client's records below this sequence number were
	// handled by pion during the handshake.
	cutoff uint64
}

// aead is what pion's cipher suites in pkg/crypto/ciphersuite offer: CCM,
// GCM and CBC alike.
type aead interface {
	Encrypt(pkt *recordlayer.RecordLayer, raw []byte) ([]byte, error)
	Decrypt(h recordlayer.Header, in []byte) ([]byte, error)
}

// replayWindow is the number of the client's sequence numbers below the
// highest seen that are still accepted once (pion's default).
const replayWindow = 64

// pionState has the fields of pion's exported session state (its
// MarshalBinary is gob, which matches fields by name) that the record
// layer needs.
type pionState struct {
	HandshakeComplete    bool
	IsClient             bool
	LocalEpoch           uint16
	RemoteEpoch          uint16
	LocalRandom          [32]byte
	RemoteRandom         [32]byte
	CipherSuiteID        uint16
	MasterSecret         []byte
	SequenceNumber       uint64
	RemoteSequenceNumber uint64
	LocalConnectionID    []byte
	RemoteConnectionID   []byte
}

var errNotEstablished = errors.New("dtls state is not of a completed server handshake")

// newRecordLayer derives the record layer of a server session from the
// state pion reports once the handshake completed.
func newRecordLayer(st *dtls.State) (*recordLayer, error) {
	raw, err := st.MarshalBinary()
	if err != nil {
		return nil, fmt.Errorf("export dtls state: %w", err)
	}
	var ps pionState
	if err := gob.NewDecoder(bytes.NewReader(raw)).Decode(&ps); err != nil {
		return nil, fmt.Errorf("read dtls state: %w", err)
	}
	if !ps.HandshakeComplete || ps.IsClient || ps.LocalEpoch != 1 || ps.RemoteEpoch != 1 || len(ps.MasterSecret) == 0 {
		return nil, errNotEstablished
	}
	// the server's random is ours, the client's the remote one
	client, server := ps.RemoteRandom[:], ps.LocalRandom[:]
	keys := func(macLen, keyLen, ivLen int) (*prf.EncryptionKeys, error) {
		return prf.GenerateEncryptionKeys(ps.MasterSecret, client, server, macLen, keyLen, ivLen, sha256.New)
	}
	var suite aead
	switch id := dtls.CipherSuiteID(ps.CipherSuiteID); id {
	case dtls.TLS_PSK_WITH_AES_128_CCM_8, dtls.TLS_PSK_WITH_AES_128_CCM:
		k, err := keys(0, 16, 4)
		if err != nil {
			return nil, err
		}
		tag := ciphersuite.CCMTagLength
		if id == dtls.TLS_PSK_WITH_AES_128_CCM_8 {
			tag = ciphersuite.CCMTagLength8
		}
		suite, err = ciphersuite.NewCCM(tag, k.ServerWriteKey, k.ServerWriteIV, k.ClientWriteKey, k.ClientWriteIV)
		if err != nil {
			return nil, err
		}
	case dtls.TLS_PSK_WITH_AES_128_GCM_SHA256:
		k, err := keys(0, 16, 4)
		if err != nil {
			return nil, err
		}
		if suite, err = ciphersuite.NewGCM(k.ServerWriteKey, k.ServerWriteIV, k.ClientWriteKey, k.ClientWriteIV); err != nil {
			return nil, err
		}
	case dtls.TLS_PSK_WITH_AES_128_CBC_SHA256:
		k, err := keys(32, 16, 16)
		if err != nil {
			return nil, err
		}
		suite, err = ciphersuite.NewCBC(k.ServerWriteKey, k.ServerWriteIV, k.ServerMACKey,
			k.ClientWriteKey, k.ClientWriteIV, k.ClientMACKey, sha256.New)
		if err != nil {
			return nil, err
		}
	default:
		return nil, fmt.Errorf("cipher suite %s has no record layer here", id)
	}
	return &recordLayer{
		suite:   suite,
		ownCID:  nonEmpty(ps.LocalConnectionID),
		peerCID: nonEmpty(ps.RemoteConnectionID),
		seq:     ps.SequenceNumber,
		replay:  replaydetector.New(replayWindow, recordlayer.MaxSequenceNumber),
		cutoff:  ps.RemoteSequenceNumber,
	}, nil
}

func nonEmpty(b []byte) []byte {
	if len(b) == 0 {
		return nil
	}
	return b
}

var errSequenceExhausted = errors.New("dtls: sequence numbers of the session are used up")

// seal makes an application data record of data.
func (rl *recordLayer) seal(data []byte) ([]byte, error) {
	rl.wmu.Lock()
	defer rl.wmu.Unlock()
	if rl.seq > recordlayer.MaxSequenceNumber {
		return nil, errSequenceExhausted // RFC 6347 §4.1: never wrap
	}
	h := recordlayer.Header{Version: protocol.Version1_2, Epoch: 1, SequenceNumber: rl.seq}
	body := data
	if rl.peerCID != nil {
		// RFC 9146: the real type goes inside, the record is tls12_cid
		inner, err := (&recordlayer.InnerPlaintext{Content: data, RealType: protocol.ContentTypeApplicationData}).Marshal()
		if err != nil {
			return nil, err
		}
		h.ContentType, h.ConnectionID, body = protocol.ContentTypeConnectionID, rl.peerCID, inner
	} else {
		h.ContentType = protocol.ContentTypeApplicationData
	}
	if len(body) > 1<<14 {
		return nil, fmt.Errorf("dtls: record of %d bytes is too large", len(body))
	}
	h.ContentLen = uint16(len(body)) //nolint:gosec // bounded above
	raw, err := h.Marshal()
	if err != nil {
		return nil, err
	}
	raw = append(raw, body...)
	out, err := rl.suite.Encrypt(&recordlayer.RecordLayer{Header: h}, raw)
	if err != nil {
		return nil, err
	}
	rl.seq++
	return out, nil
}

// opened is one record of the client, decrypted.
type opened struct {
	typ  protocol.ContentType
	data []byte // valid until the datagram's buffer is reused
	// latest: no record of the client had a higher sequence number
	latest bool
}

// open authenticates and decrypts rec, one epoch-1 record of the client
// (in place). ok is false for a record to drop silently (RFC 6347
// §4.1.2.7): forged, replayed, of another Connection ID or malformed.
func (rl *recordLayer) open(rec []byte) (o opened, ok bool) {
	var h recordlayer.Header
	cid := len(rec) > 0 && rec[0] == byte(protocol.ContentTypeConnectionID)
	if cid != (rl.ownCID != nil) {
		return o, false // a session with a Connection ID gets nothing else, and vice versa
	}
	if cid {
		h.ConnectionID = make([]byte, len(rl.ownCID))
	}
	if err := h.Unmarshal(rec); err != nil || h.Epoch != 1 || (cid && !bytes.Equal(h.ConnectionID, rl.ownCID)) {
		return o, false
	}
	rl.rmu.Lock()
	defer rl.rmu.Unlock()
	if h.SequenceNumber < rl.cutoff {
		return o, false
	}
	mark, fresh := rl.replay.Check(h.SequenceNumber)
	if !fresh {
		return o, false
	}
	var dh recordlayer.Header
	if cid {
		dh.ConnectionID = make([]byte, len(rl.ownCID))
	}
	out, err := rl.suite.Decrypt(dh, rec)
	if err != nil || len(out) < h.Size() {
		return o, false
	}
	o.typ, o.data = h.ContentType, out[h.Size():]
	if cid {
		var ip recordlayer.InnerPlaintext
		if err := ip.Unmarshal(o.data); err != nil {
			return o, false
		}
		o.typ, o.data = ip.RealType, ip.Content
	}
	o.latest = mark()
	return o, true
}
