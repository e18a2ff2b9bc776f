// Package metrics holds herokunix's Prometheus collectors. They are
// registered on controller-runtime's registry, so the manager's metrics
// endpoint (--metrics-bind-address, /metrics) serves them next to the
// controller-runtime ones.
//
// Every function here is cheap and safe for concurrent use.
package metrics

import (
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"

	"github.com/herokunix/herokunix/internal/heroku"
)

// Results of a build or a release, the values of the result label.
const (
	ResultSucceeded = "succeeded"
	ResultFailed    = "failed"
)

// CodeNone is the code label of a Heroku call that got no HTTP answer
// (transport error, timeout, client-side rate limit).
const CodeNone = "none"

var (
	builds = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "herokunix_builds_total",
		Help: "Builds finished, by result (succeeded, failed).",
	}, []string{"result"})

	buildDuration = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name: "herokunix_build_duration_seconds",
		Help: "Time from the start of a build to its end, succeeded or failed.",
		// Nix builds take from seconds (everything cached) to an hour.
		Buckets: []float64{10, 30, 60, 120, 300, 600, 900, 1200, 1800, 2700, 3600},
	})

	pushBytes = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "herokunix_push_bytes_total",
		Help: "Bytes of image blobs uploaded to the Heroku registry.",
	})

	pushBlobsSkipped = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "herokunix_push_blobs_skipped_total",
		Help: "Image blobs not uploaded because the Heroku registry already had them.",
	})

	releases = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "herokunix_releases_total",
		Help: "Heroku releases made by herokunix that reached an end, by result (succeeded, failed).",
	}, []string{"result"})

	herokuCalls = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "herokunix_heroku_api_calls_total",
		Help: `Heroku Platform API calls, by operation and HTTP status code ("none" when no answer came).`,
	}, []string{"operation", "code"})

	webhookEvents = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "herokunix_webhook_events_total",
		Help: "Requests to the webhook receiver, by sender (github, gitlab, generic, unknown) and answer (accepted, duplicate, ignored, unauthorized, too-many-requests, …).",
	}, []string{"provider", "status"})

	webhookMarked = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "herokunix_webhook_reconciles_requested_total",
		Help: "Reconcile requests the webhook receiver made (resources marked by push events).",
	})

	herokuRateLimitRemaining = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "herokunix_heroku_ratelimit_remaining",
		Help: "The last RateLimit-Remaining header Heroku sent, of any account the controller uses.",
	})
)

func init() {
	ctrlmetrics.Registry.MustRegister(builds, buildDuration, pushBytes, pushBlobsSkipped, releases, herokuCalls, herokuRateLimitRemaining, webhookEvents, webhookMarked)
}

// BuildFinished records a build that ended with result (ResultSucceeded or
// ResultFailed) after d.
func BuildFinished(result string, d time.Duration) {
	builds.WithLabelValues(result).Inc()
	if d >= 0 {
		buildDuration.Observe(d.Seconds())
	}
}

// ReleaseFinished records a release that ended with result (ResultSucceeded
// or ResultFailed).
func ReleaseFinished(result string) {
	releases.WithLabelValues(result).Inc()
}

// Pushed records one push: bytes uploaded and blobs the registry already had.
func Pushed(bytes int64, skipped int) {
	if bytes > 0 {
		pushBytes.Add(float64(bytes))
	}
	if skipped > 0 {
		pushBlobsSkipped.Add(float64(skipped))
	}
}

// HerokuObserver records Heroku API calls; set it as heroku.Options.Observer.
// The zero value is ready to use.
type HerokuObserver struct{}

var _ heroku.Observer = HerokuObserver{}

// ObserveCall counts one call of operation that got statusCode (0: none).
func (HerokuObserver) ObserveCall(operation string, statusCode int) {
	code := CodeNone
	if statusCode > 0 {
		code = strconv.Itoa(statusCode)
	}
	herokuCalls.WithLabelValues(operation, code).Inc()
}

// ObserveRateLimitRemaining sets the rate-limit gauge.
func (HerokuObserver) ObserveRateLimitRemaining(n int) {
	herokuRateLimitRemaining.Set(float64(n))
}

// WebhookEvent records one request to the webhook receiver and how many
// resources it marked for a reconcile.
func WebhookEvent(provider, status string, marked int) {
	webhookEvents.WithLabelValues(provider, status).Inc()
	if marked > 0 {
		webhookMarked.Add(float64(marked))
	}
}
