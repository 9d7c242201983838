package schedule_test

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/coord-go/coord/etcdtest"
	"github.com/coord-go/coord/schedule"
	"github.com/coord-go/coord/session"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// Three replicas run one schedule; each tick runs on exactly one of them,
// and its result is written only while the run holds (IsOwner), fenced by
// its token.
func ExampleSchedule_Run() {
	srv, err := etcdtest.Start(etcdtest.WithoutFsync())
	if err != nil {
		panic(err)
	}
	defer srv.Close()
	cli := srv.Client()

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var mu sync.Mutex
	runs := map[int64]int{} // runs per tick, across the replicas
	var wg sync.WaitGroup
	for range 3 {
		s, err := session.New(ctx, cli)
		if err != nil {
			panic(err)
		}
		defer s.Close()
		report := schedule.New(cli, "report", schedule.Every(100*time.Millisecond))
		wg.Go(func() {
			report.Run(ctx, s, func(ctx context.Context, t schedule.Tick) error {
				_, err := cli.Txn(ctx).If(t.IsOwner()).
					Then(clientv3.OpPut("report/last", fmt.Sprintf("seq %d token %d", t.Seq, t.Token))).Commit()
				mu.Lock()
				defer mu.Unlock()
				runs[t.Seq]++
				if t.Seq == 3 {
					cancel() // enough for the example
				}
				return err
			})
		})
	}
	wg.Wait()
	for seq := int64(1); seq <= 3; seq++ {
		fmt.Printf("run %d ran on %d replica\n", seq, runs[seq])
	}
	// Output:
	// run 1 ran on 1 replica
	// run 2 ran on 1 replica
	// run 3 ran on 1 replica
}

// A cron schedule in a time zone, with its policies; Status and History
// read what the fleet did.
func ExampleNew() {
	srv, err := etcdtest.Start(etcdtest.WithoutFsync())
	if err != nil {
		panic(err)
	}
	defer srv.Close()
	nightly := schedule.New(srv.Client(), "nightly-backup",
		schedule.Cron("CRON_TZ=Europe/Berlin 30 2 * * *"),
		schedule.WithCatchup(schedule.CatchupLatest), // a night missed runs once when a replica is back
		schedule.WithOverlap(schedule.OverlapSkip),   // never two backups at once
		schedule.WithCrash(schedule.CrashRerun),      // a crashed backup runs again elsewhere
		schedule.WithJitter(time.Minute))
	fmt.Println(nightly.Spec())
	fmt.Println(nightly.Spec().Next(time.Date(2030, 6, 1, 12, 0, 0, 0, time.UTC)))
	_, err = nightly.Status(context.Background())
	fmt.Println(err)
	// Output:
	// CRON_TZ=Europe/Berlin 30 2 * * *
	// 2030-06-02 00:30:00 +0000 UTC
	// schedule "nightly-backup": schedule: no such schedule
}
