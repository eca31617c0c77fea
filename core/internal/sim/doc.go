// Package sim simulates LwM2M 1.0 and 1.1 clients over CoAP/UDP, for
// demos, integration tests and load tests of the server. A Device is one
// client with its own UDP socket: it registers, keeps its registration up
// to date, answers Read, Write, Execute, Create, Delete, Discover,
// Write-Attributes and Observe in every content format its version knows,
// and sends notifications as its values change. Run drives many devices at
// once and reports rates and latencies.
//
// Devices implement objects 1 (Server), 3 (Device), 4 (Connectivity
// Monitoring), 5 (Firmware Update), 6 (Location), 3303 (Temperature, a
// random walk) and 33000 (Binary Payload, an OPAQUE resource whose bytes
// change; see ddf/33000.xml).
//
// Bootstrap and DTLS: a device with a bootstrap server URI
// (DeviceConfig.Bootstrap) first runs a client-initiated bootstrap
// (bootstrap.go) and then registers where the written Security and Server
// instances say. A coaps:// server is reached over DTLS 1.2 with a PSK
// (pion/dtls, CCM_8/GCM/CBC suites, sending the server's Connection ID);
// Run derives each device's PSK from patterns (ExpandPSK), and
// RebindAfter moves a DTLS session to a new source port to exercise
// Connection IDs (dtls.go).
//
// Scale: a device speaks CoAP through a link of its own (link.go), not
// go-coap's client conn: a load generator shares the machine with the
// server it measures, and the link costs well under half the CPU per
// message. The devices of a run share one timer heap, so a device costs its
// socket, the link's reader goroutine and its own state, which is shared
// copy-on-write with the other devices until the server changes it. Only
// the short-lived bootstrap conn runs on go-coap's client.
package sim
