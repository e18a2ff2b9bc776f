package main

import (
	"flag"
	"fmt"
	"os"

	"golang.org/x/time/rate"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"

	"github.com/herokunix/herokunix/internal/metrics"
	"github.com/herokunix/herokunix/internal/receiver"
)

// receiverFlags configure the optional push-event receiver (docs/webhooks.md).
type receiverFlags struct {
	addr                   string
	secretName, secretNS   string
	maxBody                int64
	perSource, global      float64
	perSourceBurst, gBurst int
}

func bindReceiverFlags(fs *flag.FlagSet) *receiverFlags {
	f := &receiverFlags{}
	ns := os.Getenv("POD_NAMESPACE")
	if ns == "" {
		ns = "herokunix-system"
	}
	d := receiver.DefaultLimits
	fs.StringVar(&f.addr, "webhook-bind-address", "", "serve the push-event receiver (/hooks/github, /hooks/gitlab, /hooks/generic) on this address, e.g. :9292; empty: off")
	fs.StringVar(&f.secretName, "webhook-secret", "herokunix-webhooks", "Secret with the receiver's keys (github, gitlab, generic)")
	fs.StringVar(&f.secretNS, "webhook-secret-namespace", ns, "namespace of --webhook-secret (default: $POD_NAMESPACE)")
	fs.Int64Var(&f.maxBody, "webhook-max-body", receiver.DefaultMaxBody, "largest event body read, in bytes")
	fs.Float64Var(&f.perSource, "webhook-rate-per-source", float64(d.PerSource), "events a second taken from one client address")
	fs.IntVar(&f.perSourceBurst, "webhook-burst-per-source", d.PerSourceBurst, "burst of events from one client address")
	fs.Float64Var(&f.global, "webhook-rate", float64(d.Global), "events a second taken in total")
	fs.IntVar(&f.gBurst, "webhook-burst", d.GlobalBurst, "burst of events in total")
	return f
}

// addReceiver adds the receiver to the manager when it is enabled.
func addReceiver(mgr ctrl.Manager, f *receiverFlags) error {
	if f.addr == "" {
		return nil
	}
	if f.secretName == "" || f.secretNS == "" {
		return fmt.Errorf("--webhook-bind-address needs --webhook-secret and --webhook-secret-namespace")
	}
	h := receiver.New(receiver.Options{
		Client:  mgr.GetClient(),
		Secrets: &receiver.SecretSource{Reader: mgr.GetAPIReader(), Name: types.NamespacedName{Namespace: f.secretNS, Name: f.secretName}},
		Limits: receiver.Limits{
			PerSource: rate.Limit(f.perSource), PerSourceBurst: f.perSourceBurst,
			Global: rate.Limit(f.global), GlobalBurst: f.gBurst,
		},
		MaxBody: f.maxBody,
		Log:     ctrl.Log.WithName("webhook"),
		Observe: metrics.WebhookEvent,
	})
	if err := mgr.Add(&receiver.Server{Addr: f.addr, Handler: h}); err != nil {
		return fmt.Errorf("adding the webhook receiver: %w", err)
	}
	return nil
}
