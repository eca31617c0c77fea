// Package ddf holds the LwM2M object definitions (OMA DDF XML) that the
// server understands out of the box. Operators upload further definitions at
// run time; these are the ones every deployment starts with.
package ddf

import "embed"

// FS holds one <ObjectID>.xml file per built-in object.
//
//go:embed *.xml
var FS embed.FS
