// Package lwm2m holds the LwM2M data model shared by every layer of the
// server: paths, resource types, typed values, records and links. It is a
// leaf package: it imports nothing of ours, so codecs, transport, registry,
// storage and the API can all speak the same types.
package lwm2m
