package ratelimit_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/coord-go/coord/etcdtest"
	"github.com/coord-go/coord/ratelimit"
	"github.com/coord-go/coord/session"
)

func ExampleLimiter() {
	srv, err := etcdtest.Start(etcdtest.WithoutFsync())
	if err != nil {
		panic(err)
	}
	defer srv.Close()
	ctx := context.Background()
	s, err := session.New(ctx, srv.Client())
	if err != nil {
		panic(err)
	}
	defer s.Close()

	// At most 100 calls per second to the partner API, across every
	// replica, with bursts of up to 10: no window of a second ever holds
	// more than 110.
	api := ratelimit.New(s, "partner-api", ratelimit.Per(100, time.Second), 10)
	for range 20 {
		if err := api.Wait(ctx); err != nil {
			panic(err)
		}
		// call the partner API here, at once
	}
	st, err := api.State(ctx)
	if err != nil {
		panic(err)
	}
	fmt.Println("limit:", st.Limit, "burst:", st.Burst)
	fmt.Printf("%d epochs of %v per interval, sustained rate %.0f\n", st.Epochs, st.Epoch, st.Rate)
	// Output:
	// limit: 100/1s burst: 10
	// 10 epochs of 100ms per interval, sustained rate 100
}

func ExampleLimiter_AllowN() {
	srv, err := etcdtest.Start(etcdtest.WithoutFsync())
	if err != nil {
		panic(err)
	}
	defer srv.Close()
	ctx := context.Background()
	s, err := session.New(ctx, srv.Client())
	if err != nil {
		panic(err)
	}
	defer s.Close()

	// One report a day, and a burst of one: the day's permit and the
	// burst's.
	report := ratelimit.New(s, "daily-report", ratelimit.Per(1, 24*time.Hour), 1)
	ok, err := report.AllowN(ctx, 1)
	fmt.Println("first:", ok, err)
	// Nothing more this epoch: refused at once, with no RPC.
	ok, err = report.AllowN(ctx, 1)
	fmt.Println("second:", ok, err)
	// More than the burst can never be granted.
	_, err = report.AllowN(ctx, 2)
	fmt.Println("two at once:", errors.Is(err, ratelimit.ErrTooLarge))
	// Output:
	// first: true <nil>
	// second: false <nil>
	// two at once: true
}

func ExampleLimiter_SetLimit() {
	srv, err := etcdtest.Start(etcdtest.WithoutFsync())
	if err != nil {
		panic(err)
	}
	defer srv.Close()
	ctx := context.Background()
	a, err := session.New(ctx, srv.Client())
	if err != nil {
		panic(err)
	}
	defer a.Close()
	b, err := session.New(ctx, srv.Client())
	if err != nil {
		panic(err)
	}
	defer b.Close()

	la := ratelimit.New(a, "search", ratelimit.Per(100, time.Second), 10)
	if err := la.Wait(ctx); err != nil {
		panic(err)
	}
	// Another deployment that disagrees about the limit is told so.
	lb := ratelimit.New(b, "search", ratelimit.Per(200, time.Second), 10)
	fmt.Println("mismatch:", errors.Is(lb.Wait(ctx), ratelimit.ErrLimitMismatch))

	// SetLimit changes it for everyone, whatever they were made with.
	if err := la.SetLimit(ctx, ratelimit.Per(50, time.Second)); err != nil {
		panic(err)
	}
	st, err := lb.State(ctx)
	if err != nil {
		panic(err)
	}
	fmt.Println("limit:", st.Limit)
	// Output:
	// mismatch: true
	// limit: 50/1s
}
