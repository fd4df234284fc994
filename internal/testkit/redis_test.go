package testkit_test

import (
	"context"
	"os"
	"testing"

	"github.com/d38ad898/redisadapter/internal/testkit"
)

func TestNewRedis(t *testing.T) {
	testkit.VerifyNoLeaks(t)
	r := testkit.NewRedis(t)
	if want := os.Getenv("REDIS_URL") != ""; r.Real() != want || (r.Mini() == nil) != want {
		t.Fatalf("Real() = %v, Mini() = %v with REDIS_URL=%q", r.Real(), r.Mini(), os.Getenv("REDIS_URL"))
	}
	c := r.Client(t)
	if err := c.Ping(context.Background()).Err(); err != nil {
		t.Fatal(err)
	}
	o := r.Options()
	o.DB = 3
	if r.Options().DB == 3 {
		t.Error("Options does not return a copy")
	}
}
