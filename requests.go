package redisadapter

import (
	"context"
	"encoding/json"
	"fmt"
	"sync/atomic"

	"github.com/redis/go-redis/v9"
)

// contextBackground is the root of every context the adapter creates. The
// adapter stores no context: each call that waits on Redis gets its own
// timeout derived from Options.
func contextBackground() context.Context { return context.Background() }

// serverCount returns PUBSUB NUMSUB of channel, summed over every master when
// the client is a Redis Cluster client (PUBSUB is keyless, so a cluster client
// would otherwise ask one random node). While degraded it is 1, without a
// round trip.
func (b *Builder) serverCount(channel string) (int64, error) {
	if st := b.load(); st == StateDegraded || st == StateClosed {
		return 1, nil
	}
	ctx, cancel := context.WithTimeout(contextBackground(), b.opts.PublishTimeout)
	defer cancel()
	if cc, ok := b.client.(*redis.ClusterClient); ok {
		var total atomic.Int64
		err := cc.ForEachMaster(ctx, func(ctx context.Context, c *redis.Client) error {
			m, err := c.PubSubNumSub(ctx, channel).Result()
			if err != nil {
				return err
			}
			total.Add(m[channel])
			return nil
		})
		return total.Load(), err
	}
	m, err := b.client.PubSubNumSub(ctx, channel).Result()
	if err != nil {
		return 0, err
	}
	return m[channel], nil
}

// checkRequestFrame validates the envelope of a request or response frame:
// JSON when it starts with '{', msgpack otherwise (the Node adapter's rule),
// and a map in both cases.
func checkRequestFrame(payload string) error {
	if len(payload) == 0 {
		return errEmptyFrame
	}
	if payload[0] == '{' {
		var m map[string]json.RawMessage
		if err := json.Unmarshal([]byte(payload), &m); err != nil {
			return fmt.Errorf("%w: %v", errFrameShape, err)
		}
		return nil
	}
	fd := getDecoder([]byte(payload))
	defer putDecoder(fd)
	v, err := fd.value(0)
	if err != nil {
		return err
	}
	if _, ok := v.(map[string]any); !ok {
		return fmt.Errorf("%w: request is a %T, not a map", errFrameShape, v)
	}
	if fd.r.Len() != 0 {
		return errTrailing
	}
	return nil
}
