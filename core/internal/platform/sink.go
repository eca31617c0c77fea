package platform

import (
	"context"

	"github.com/lwm2md/lwm2md/core/internal/device"
)

var _ device.Sink = (*Platform)(nil)

// Consume makes Platform a device.Sink: each sample updates the device's
// latest values (see ConsumeRecords). Failures are logged; the stream
// goes on.
func (p *Platform) Consume(ctx context.Context, s device.Sample) {
	err := p.ConsumeRecords(ctx, s.Tenant, s.DeviceID, s.Records, s.Received)
	switch {
	case isNotFound(err):
		p.log.Debug("values of a missing device dropped", "endpoint", s.Endpoint, "tenant", s.Tenant, "id", s.DeviceID)
	case err != nil:
		p.log.Warn("cannot keep latest values", "endpoint", s.Endpoint, "source", s.Source, "err", err)
	}
}
