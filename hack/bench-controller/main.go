// Command bench-controller measures the reconciler at scale: N
// HerokuNixApps (default 500), each with its own Heroku app on one account,
// against a real kube-apiserver and the Heroku stand-in. It plays the
// kubelet (build Jobs complete with a real pushed image's result), and
// reports the time to all Ready, the controller process's peak heap, and
// Heroku calls per app for the first deploy and for one resync.
//
// Then it measures the Heroku budget: every resource follows a moving ref
// (a refresh build Job every interval, spec.interval at its 1m minimum)
// and it counts Heroku reads per resource per interval over -intervals
// intervals (the target is at most one: the drift check). Last, a 429
// storm: the stand-in answers every API call with 429 for -storm while
// every resource gets a reconcile request (a burst of push webhooks), and
// it counts the calls made during the storm and after it, until all
// resources are Ready again. The last line sums it up for machines.
//
//	go run ./hack/bench-controller [-n 500] [-intervals 3] [-storm 2m]
package main

import (
	"context"
	"flag"
	"fmt"
	"net/http"
	"os"
	goruntime "runtime"
	"strings"
	"sync/atomic"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	herokunixv1 "github.com/herokunix/herokunix/api/v1alpha1"
	"github.com/herokunix/herokunix/hack/internal/benchenv"
	"github.com/herokunix/herokunix/test/herokustub"
)

func main() {
	n := flag.Int("n", 500, "number of HerokuNixApps")
	concurrency := flag.Int("concurrency", 4, "reconciles at once")
	intervals := flag.Int("intervals", 3, "intervals (1m each) over which Heroku reads of moving refs are counted")
	storm := flag.Duration("storm", 2*time.Minute, "how long the stand-in answers 429")
	flag.Parse()
	if err := run(*n, *concurrency, *intervals, *storm); err != nil {
		fmt.Fprintln(os.Stderr, "bench-controller:", err)
		os.Exit(1)
	}
}

// interval is the resources' spec.interval in the budget phases: its
// minimum, so the bench takes minutes. The stand-in's account budget and
// the controller's share are scaled by the same factor from their
// 10-minute-interval defaults (4,500 and 2,250 an hour), so budgets pace
// the bench as they would pace the default interval.
const (
	interval    = time.Minute
	budgetScale = int(herokunixv1.DefaultInterval / interval)
)

func run(n, concurrency, intervals int, storm time.Duration) error {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	env, err := benchenv.Start(ctx, n, func(int) string { return "github:acme/shop/" + strings.Repeat("a", 40) },
		func(o *herokustub.Options) { o.RateLimitBudget, o.RefillPerMinute = 4500*budgetScale, 75*budgetScale })
	if err != nil {
		return err
	}
	defer env.Stop()
	c, stub := env.Client, env.Stub
	stub.ResetCalls()

	mgr, err := env.NewManager(ctx, concurrency, 2250*budgetScale)
	if err != nil {
		return err
	}
	go func() { _ = mgr.Start(ctx) }()

	var peak atomic.Uint64
	stopSampling := sampleHeap(&peak)
	defer stopSampling()
	go env.PlayKubelet(ctx)

	start := time.Now()
	for i := range n {
		app := &herokunixv1.HerokuNixApp{
			ObjectMeta: metav1.ObjectMeta{Name: benchenv.Resource(i), Namespace: benchenv.Namespace},
			Spec: herokunixv1.HerokuNixAppSpec{
				AppName: benchenv.HerokuApp(i), Flake: "github:acme/shop/" + strings.Repeat("a", 40),
				Processes:            map[string]herokunixv1.Process{"web": {Attribute: "packages.x86_64-linux.web", Quantity: ptr.To[int32](1)}},
				CredentialsSecretRef: herokunixv1.SecretKeyRef{Name: benchenv.SecretName, Key: "apiKey"},
			},
		}
		if err := c.Create(ctx, app); err != nil {
			return err
		}
	}
	if err := waitReady(ctx, c, n, nil, 15*time.Minute); err != nil {
		return err
	}
	elapsed := time.Since(start)
	firstCalls := apiCalls(stub)

	// One resync of every resource, asked for with the reconcile-now annotation.
	stub.ResetCalls()
	resyncStart := time.Now()
	stamp := resyncStart.Format(time.RFC3339Nano)
	var list herokunixv1.HerokuNixAppList
	if err := c.List(ctx, &list, client.InNamespace(benchenv.Namespace)); err != nil {
		return err
	}
	for i := range list.Items {
		a := &list.Items[i]
		patch := client.MergeFrom(a.DeepCopy())
		a.Annotations = map[string]string{herokunixv1.ReconcileRequestAnnotation: stamp}
		if err := c.Patch(ctx, a, patch); err != nil {
			return err
		}
	}
	if err := waitReady(ctx, c, n, &stamp, 15*time.Minute); err != nil {
		return err
	}
	resync := time.Since(resyncStart)
	resyncCalls := apiCalls(stub)

	fmt.Printf("apps: %d, concurrency: %d\n", n, concurrency)
	fmt.Printf("first deploy: all Ready in %s (%.1f apps/s)\n", elapsed.Round(time.Millisecond), float64(n)/elapsed.Seconds())
	fmt.Printf("heroku API calls, first deploy: %d (%.2f per app; writes %d)\n", firstCalls.total, float64(firstCalls.total)/float64(n), firstCalls.writes)
	fmt.Printf("resync: all handled in %s\n", resync.Round(time.Millisecond))
	fmt.Printf("heroku API calls, one resync: %d (%.2f per app; writes %d)\n", resyncCalls.total, float64(resyncCalls.total)/float64(n), resyncCalls.writes)
	fmt.Printf("peak Go heap in use (controller, API client, stand-in and kubelet player share the process): %.1f MiB\n", float64(peak.Load())/(1<<20))

	reads, builds, err := refreshBudget(ctx, env, n, intervals)
	if err != nil {
		return err
	}
	fmt.Printf("moving refs at interval %s, over %d intervals: %.2f refresh builds and %.2f Heroku reads per resource per interval (target: at most 1 read)\n",
		interval, intervals, builds, reads)

	st, err := rateLimitStorm(ctx, env, n, storm)
	if err != nil {
		return err
	}
	fmt.Printf("429 storm of %s over %d resources, each asked to reconcile: %d calls reached Heroku during it (%.2f per resource; %d tried and refused by the client, %.2f per resource)\n",
		storm, n, st.stormCalls, float64(st.stormCalls)/float64(n), st.stormRefused, float64(st.stormRefused)/float64(n))
	fmt.Printf("after the storm: %d calls until %d of %d resources were Ready again (in %s)\n",
		st.afterCalls, st.converged, n, st.convergence.Round(time.Second))
	fmt.Printf("bench-controller: resources=%d storm_calls=%d calls_per_resource=%.2f storm_tries_per_resource=%.2f after_calls=%d converged=%d convergence_s=%.0f reads_per_interval=%.2f builds_per_interval=%.2f\n",
		n, st.stormCalls, float64(st.stormCalls)/float64(n), float64(st.stormRefused+st.stormCalls)/float64(n), st.afterCalls,
		st.converged, st.convergence.Seconds(), reads, builds)
	return nil
}

// refreshBudget moves every resource to a moving ref at the bench
// interval, waits for them to settle, and counts over the next intervals
// the Heroku reads and the refresh builds per resource per interval.
func refreshBudget(ctx context.Context, env *benchenv.Env, n, intervals int) (reads, builds float64, err error) {
	c := env.Client
	var list herokunixv1.HerokuNixAppList
	if err := c.List(ctx, &list, client.InNamespace(benchenv.Namespace)); err != nil {
		return 0, 0, err
	}
	for i := range list.Items {
		a := &list.Items[i]
		patch := client.MergeFrom(a.DeepCopy())
		a.Spec.Flake = "github:acme/shop"
		a.Spec.Interval = &metav1.Duration{Duration: interval}
		if err := c.Patch(ctx, a, patch); err != nil {
			return 0, 0, err
		}
	}
	if err := waitReady(ctx, c, n, nil, 15*time.Minute); err != nil {
		return 0, 0, err
	}
	// One interval to settle: the first refreshes after the move.
	if err := sleep(ctx, interval); err != nil {
		return 0, 0, err
	}
	env.Stub.ResetCalls()
	builds0 := env.BuildsCompleted.Load()
	start := time.Now()
	if err := sleep(ctx, time.Duration(intervals)*interval); err != nil {
		return 0, 0, err
	}
	got := apiCalls(env.Stub)
	elapsed := float64(time.Since(start)) / float64(interval)
	per := float64(n) * elapsed
	return float64(got.total-got.writes) / per, float64(env.BuildsCompleted.Load()-builds0) / per, nil
}

type stormFigures struct {
	stormCalls, stormRefused, afterCalls int64
	converged                            int
	convergence                          time.Duration
}

// rateLimitStorm makes the stand-in answer every API call with 429 for
// storm while every resource is asked to reconcile (a burst of push
// webhooks), then counts the calls until every resource is Ready and has
// handled its request.
func rateLimitStorm(ctx context.Context, env *benchenv.Env, n int, storm time.Duration) (stormFigures, error) {
	var st stormFigures
	c, stub := env.Client, env.Stub
	stub.Faults().Add(herokustub.Fault{Status: http.StatusTooManyRequests})
	stub.ResetCalls()
	refused0 := env.HerokuRefused.Load()
	stamp := time.Now().Format(time.RFC3339Nano)
	var list herokunixv1.HerokuNixAppList
	if err := c.List(ctx, &list, client.InNamespace(benchenv.Namespace)); err != nil {
		return st, err
	}
	for i := range list.Items {
		a := &list.Items[i]
		patch := client.MergeFrom(a.DeepCopy())
		a.Annotations = map[string]string{herokunixv1.ReconcileRequestAnnotation: stamp}
		if err := c.Patch(ctx, a, patch); err != nil {
			return st, err
		}
	}
	if err := sleep(ctx, storm); err != nil {
		return st, err
	}
	stub.Faults().Clear()
	st.stormCalls = int64(apiCalls(stub).total)
	st.stormRefused = env.HerokuRefused.Load() - refused0
	stub.ResetCalls()
	end := time.Now()
	err := waitReady(ctx, c, n, &stamp, 30*time.Minute)
	st.convergence = time.Since(end)
	st.afterCalls = int64(apiCalls(stub).total)
	st.converged, _ = countReady(ctx, c, &stamp)
	return st, err
}

func sleep(ctx context.Context, d time.Duration) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(d):
		return nil
	}
}

type calls struct{ total, writes int }

func apiCalls(s *herokustub.Server) calls {
	var c calls
	for _, call := range s.Calls() {
		if call.Handler != "api" {
			continue
		}
		c.total++
		if call.IsWrite() {
			c.writes++
		}
	}
	return c
}

// waitReady polls until n resources are Ready for their generation (and,
// with stamp, have handled that reconcile request).
func waitReady(ctx context.Context, c client.Client, n int, stamp *string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	ready := 0
	for time.Now().Before(deadline) {
		var err error
		if ready, err = countReady(ctx, c, stamp); err != nil {
			return err
		}
		if ready == n {
			return nil
		}
		time.Sleep(100 * time.Millisecond) // a benchmark's progress poll, not test synchronisation
	}
	return fmt.Errorf("%d of %d resources became Ready in %s", ready, n, timeout)
}

// countReady counts the resources Ready for their generation (and, with
// stamp, that handled that reconcile request).
func countReady(ctx context.Context, c client.Client, stamp *string) (int, error) {
	var list herokunixv1.HerokuNixAppList
	if err := c.List(ctx, &list); err != nil {
		return 0, err
	}
	ready := 0
	for _, a := range list.Items {
		if meta.IsStatusConditionTrue(a.Status.Conditions, herokunixv1.ConditionReady) && a.Status.ObservedGeneration == a.Generation &&
			(stamp == nil || a.Status.LastHandledReconcileAt == *stamp) {
			ready++
		}
	}
	return ready, nil
}

// sampleHeap records the peak of the Go heap in use.
func sampleHeap(peak *atomic.Uint64) (stop func()) {
	done := make(chan struct{})
	go func() {
		t := time.NewTicker(20 * time.Millisecond)
		defer t.Stop()
		var ms goruntime.MemStats
		for {
			select {
			case <-done:
				return
			case <-t.C:
				goruntime.ReadMemStats(&ms)
				if ms.HeapInuse > peak.Load() {
					peak.Store(ms.HeapInuse)
				}
			}
		}
	}()
	return func() { close(done) }
}
