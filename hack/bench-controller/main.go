// Command bench-controller measures the reconciler at scale: N
// HerokuNixApps (default 500), each with its own Heroku app on one account,
// against a real kube-apiserver and the Heroku stand-in. It plays the
// kubelet (build Jobs complete with a real pushed image's result), and
// reports the time to all Ready, the controller process's peak heap, and
// Heroku calls per app for the first deploy and for one resync.
//
//	go run ./hack/bench-controller [-n 500]
package main

import (
	"context"
	"flag"
	"fmt"
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
	flag.Parse()
	if err := run(*n, *concurrency); err != nil {
		fmt.Fprintln(os.Stderr, "bench-controller:", err)
		os.Exit(1)
	}
}

func run(n, concurrency int) error {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	env, err := benchenv.Start(ctx, n, func(int) string { return "github:acme/shop/" + strings.Repeat("a", 40) })
	if err != nil {
		return err
	}
	defer env.Stop()
	c, stub := env.Client, env.Stub
	stub.ResetCalls()

	mgr, err := env.NewManager(ctx, concurrency, 4500)
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
	if err := waitReady(ctx, c, n, nil); err != nil {
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
	if err := waitReady(ctx, c, n, &stamp); err != nil {
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
	return nil
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
func waitReady(ctx context.Context, c client.Client, n int, stamp *string) error {
	deadline := time.Now().Add(15 * time.Minute)
	for time.Now().Before(deadline) {
		var list herokunixv1.HerokuNixAppList
		if err := c.List(ctx, &list); err != nil {
			return err
		}
		ready := 0
		for _, a := range list.Items {
			if meta.IsStatusConditionTrue(a.Status.Conditions, herokunixv1.ConditionReady) && a.Status.ObservedGeneration == a.Generation &&
				(stamp == nil || a.Status.LastHandledReconcileAt == *stamp) {
				ready++
			}
		}
		if ready == n {
			return nil
		}
		time.Sleep(100 * time.Millisecond) // a benchmark's progress poll, not test synchronisation
	}
	return fmt.Errorf("not all %d resources became Ready in time", n)
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
