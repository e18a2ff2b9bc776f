package heroku

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"sort"
	"strings"
	"time"

	hk "github.com/heroku/heroku-go/v5"
)

// App is what herokunix needs to know about a Heroku app.
type App struct {
	// ID is Heroku's id of the app: unlike its name, never given to
	// another app (a deleted app's name can be taken again).
	ID     string
	Name   string
	Stack  string
	WebURL string
	// Generation is "cedar" or "fir" (GenerationCedar, GenerationFir), or
	// "" when Heroku's answer has none.
	Generation string
	// BuildStack is the stack the next release uses.
	BuildStack string
}

// Generations of Heroku apps (Dev Center "Generations").
const (
	GenerationCedar = "cedar"
	GenerationFir   = "fir"
)

// appAnswer is GET /apps/{app}. heroku-go v5's App lacks "generation",
// which Heroku sends (heroku-go v6 schema).
type appAnswer struct {
	hk.App
	Generation *struct {
		ID   string `json:"id"`
		Name string `json:"name"`
	} `json:"generation"`
}

// App reads the app. It returns a *GenerationError for a Fir app, which
// takes no container images whatever its stack, and a *StackError when
// neither the app's stack nor its build stack is "container" (after
// `heroku stack:set container` the build stack changes at once and the
// stack at the next release). An answer without a generation is taken as
// Cedar, the only generation before Fir.
func (c *Client) App(ctx context.Context, app string) (*App, error) {
	a, err := c.AppInfo(ctx, app)
	if err != nil {
		return nil, err
	}
	if err := a.CheckContainerReady(); err != nil {
		return nil, err
	}
	return a, nil
}

// AppInfo reads the app without judging it; CheckContainerReady does that.
func (c *Client) AppInfo(ctx context.Context, app string) (*App, error) {
	var a appAnswer
	if err := c.do(ctx, request{op: "app.info", method: "GET", path: "/apps/" + url.PathEscape(app)}, &a); err != nil {
		return nil, err
	}
	out := &App{ID: a.ID, Name: a.Name, Stack: a.Stack.Name, WebURL: a.WebURL, BuildStack: a.BuildStack.Name}
	if a.Generation != nil {
		out.Generation = a.Generation.Name
	}
	return out, nil
}

// CheckContainerReady says why the app cannot take container images: a
// *GenerationError (Fir), a *StackError (not on the container stack), or
// nil.
func (a *App) CheckContainerReady() error {
	if a.Generation == GenerationFir {
		return &GenerationError{App: a.Name, Generation: a.Generation}
	}
	if a.Stack != "container" && a.BuildStack != "container" {
		return &StackError{App: a.Name, Stack: a.Stack, BuildStack: a.BuildStack}
	}
	return nil
}

// Release statuses. A legacy release may have no status (null), which
// reads as "": it is neither success nor failure.
const (
	ReleasePending   = "pending"
	ReleaseSucceeded = "succeeded"
	ReleaseFailed    = "failed"
	// ReleaseExpired: Heroku destroyed the release's artifacts (releases
	// older than 30 days and more than 20 back, since 2025-10-01); it
	// cannot be rolled back to and its images may be gone.
	ReleaseExpired = "expired"
)

// Release is a Heroku release.
type Release struct {
	ID      string
	Version int
	// Status is pending, succeeded, failed, expired, or "" (null, legacy).
	Status          string
	Current         bool
	Description     string
	OutputStreamURL string
	CreatedAt       time.Time
}

// Succeeded says whether the release's release phase (if any) succeeded.
// Expired and null statuses are not success.
func (r *Release) Succeeded() bool { return r.Status == ReleaseSucceeded }

func fromHK(r *hk.Release) *Release {
	out := &Release{ID: r.ID, Version: r.Version, Status: r.Status, Current: r.Current,
		Description: r.Description, CreatedAt: r.CreatedAt}
	if r.OutputStreamURL != nil {
		out.OutputStreamURL = *r.OutputStreamURL
	}
	return out
}

// latestRange is the Range the Heroku CLI sends for "the latest release".
const latestRange = "version ..; max=1, order=desc"

// CurrentRelease returns the app's latest release (highest version), as the
// Heroku CLI finds it with `Range: version ..; max=1, order=desc`. It may be
// pending or failed; Current says whether it is the one running. It returns
// (nil, nil) when the app has no release.
func (c *Client) CurrentRelease(ctx context.Context, app string) (*Release, error) {
	var list []hk.Release
	err := c.do(ctx, request{op: "release.list", method: "GET",
		path: "/apps/" + url.PathEscape(app) + "/releases", rng: latestRange}, &list)
	if err != nil {
		return nil, err
	}
	if len(list) == 0 {
		return nil, nil
	}
	return fromHK(&list[0]), nil
}

// maxPages bounds how many pages ReleasesAfter reads (1,000 releases a
// page): far more releases than an app makes between two resyncs.
const maxPages = 100

// ReleasesAfter lists every release of the app after version, oldest
// first, however many there are: it asks with Heroku's exclusive start
// (`Range: version ]<version>..; max=1000`) and follows Next-Range while
// Heroku answers 206.
func (c *Client) ReleasesAfter(ctx context.Context, app string, version int) ([]*Release, error) {
	rng := fmt.Sprintf("version ]%d..; max=%d", version, maxPageSize)
	var out []*Release
	for page := 0; ; page++ {
		if page == maxPages {
			return nil, &Error{Kind: KindOther, Message: fmt.Sprintf("release.list: more than %d pages of releases after v%d", maxPages, version)}
		}
		var list []hk.Release
		var ans answer
		err := c.do(ctx, request{op: "release.list", method: "GET",
			path: "/apps/" + url.PathEscape(app) + "/releases", rng: rng, answer: &ans}, &list)
		if err != nil {
			return nil, err
		}
		for i := range list {
			out = append(out, fromHK(&list[i]))
		}
		next := ans.header.Get("Next-Range")
		if ans.status != http.StatusPartialContent || next == "" || len(list) == 0 {
			return out, nil
		}
		rng = next
	}
}

// maxPageSize is the largest page Heroku serves.
const maxPageSize = 1000

// Release reads one release by id (or version).
func (c *Client) Release(ctx context.Context, app, id string) (*Release, error) {
	var r hk.Release
	err := c.do(ctx, request{op: "release.info", method: "GET",
		path: "/apps/" + url.PathEscape(app) + "/releases/" + url.PathEscape(id)}, &r)
	if err != nil {
		return nil, err
	}
	return fromHK(&r), nil
}

var (
	processTypeRE = regexp.MustCompile(`^[-\w]{1,128}$`)
	imageIDRE     = regexp.MustCompile(`^sha256:[0-9a-f]{64}$`)
)

// dockerUpdate is one update of the docker-releases formation PATCH, which
// heroku-go's FormationBatchUpdateOpts cannot express.
type dockerUpdate struct {
	Type        string `json:"type"`
	DockerImage string `json:"docker_image"`
}

type dockerReleaseBody struct {
	Updates []dockerUpdate `json:"updates"`
}

// ReleaseOutcome says what ReleaseImages did.
type ReleaseOutcome int

const (
	// Released: Heroku made a new release, the latest.
	Released ReleaseOutcome = iota + 1
	// AlreadyDeployed: the latest release deploys these images already (a
	// repeated call after a lost answer, or from stale state); nothing was
	// sent.
	AlreadyDeployed
	// NotReleased: the images were sent but Heroku made no new release. It
	// ignores a release of the images its current release runs; the latest
	// release (if any) is someone else's.
	NotReleased
)

// ReleaseImages releases images (process type → image ID, the config digest
// "sha256:…") in one docker-releases formation PATCH, as `heroku
// container:release` does: latest release, PATCH, latest release again. It
// returns the latest release afterwards (nil when Heroku lists none) and
// what happened. It needs three calls of budget up front so a release is
// not left half-observed by the client-side limiter.
func (c *Client) ReleaseImages(ctx context.Context, app string, images map[string]string) (*Release, ReleaseOutcome, error) {
	body, err := dockerRelease(images)
	if err != nil {
		return nil, 0, err
	}
	if wait, ok := c.limiter.peek(c.now(), 3); !ok {
		return nil, 0, &Error{Kind: KindRateLimited, ID: "rate_limit",
			Message: "herokunix's share of the Heroku rate limit is too low to release", RetryAfter: wait}
	}

	before, err := c.CurrentRelease(ctx, app)
	if err != nil {
		return nil, 0, err
	}
	// A repeated call (its answer was lost, or the caller looked at stale
	// state) must not release again: Heroku would run the release phase a
	// second time if the first is still pending.
	if before != nil && Deploys(before, images) {
		return before, AlreadyDeployed, nil
	}
	if err := c.sendImages(ctx, app, body); err != nil {
		return nil, 0, err
	}
	after, err := c.CurrentRelease(ctx, app)
	if err != nil {
		return nil, 0, err
	}
	if after == nil || (before != nil && before.ID == after.ID) {
		return after, NotReleased, nil
	}
	return after, Released, nil
}

// SendImages is the docker-releases formation PATCH alone, for a caller
// that reads the releases around it itself. Heroku updates only the types
// not already running the requested image (per-type ignore) and makes no
// release when none changed, so sending the same images again is safe once
// no release of them is pending.
func (c *Client) SendImages(ctx context.Context, app string, images map[string]string) error {
	body, err := dockerRelease(images)
	if err != nil {
		return err
	}
	return c.sendImages(ctx, app, body)
}

func (c *Client) sendImages(ctx context.Context, app string, body dockerReleaseBody) error {
	return c.do(ctx, request{op: "formation.docker-release", method: "PATCH",
		path: "/apps/" + url.PathEscape(app) + "/formation", body: body, accept: acceptDockerReleases}, nil)
}

// dockerRelease checks images and makes the PATCH body, types sorted.
func dockerRelease(images map[string]string) (dockerReleaseBody, error) {
	body := dockerReleaseBody{}
	if len(images) == 0 {
		return body, &Error{Kind: KindInvalidParams, ID: "invalid_params", Message: "no images to release"}
	}
	for typ, id := range images {
		if !processTypeRE.MatchString(typ) {
			return body, &Error{Kind: KindInvalidParams, ID: "invalid_params", Message: fmt.Sprintf("process type %q is not valid", typ)}
		}
		if !imageIDRE.MatchString(id) {
			return body, &Error{Kind: KindInvalidParams, ID: "invalid_params",
				Message: fmt.Sprintf("image ID for %q must be a config digest sha256:<64 hex>", typ)}
		}
		body.Updates = append(body.Updates, dockerUpdate{Type: typ, DockerImage: id})
	}
	sort.Slice(body.Updates, func(i, j int) bool { return body.Updates[i].Type < body.Updates[j].Type })
	return body, nil
}

// Deploys says whether Heroku describes rel as the deploy of exactly these
// images: "Deployed web (<first 12 hex of the image ID>), worker (…)", as
// it describes container releases.
func Deploys(rel *Release, images map[string]string) bool {
	desc, ok := strings.CutPrefix(rel.Description, "Deployed ")
	if !ok || len(images) == 0 {
		return false
	}
	parts := strings.Split(desc, ", ")
	if len(parts) != len(images) {
		return false
	}
	for _, p := range parts {
		typ, id, ok := strings.Cut(strings.TrimSuffix(p, ")"), " (")
		want, found := images[typ]
		if !ok || !found || len(id) < 12 || !strings.HasPrefix(strings.TrimPrefix(want, "sha256:"), id) {
			return false
		}
	}
	return true
}

// Rollback makes a new release that runs the images of release id (or
// version), as `heroku rollback` does. Like every new release it runs the
// release phase when the app's formation holds a release image.
func (c *Client) Rollback(ctx context.Context, app, id string) (*Release, error) {
	var r hk.Release
	err := c.do(ctx, request{op: "release.rollback", method: "POST",
		path: "/apps/" + url.PathEscape(app) + "/releases", body: map[string]string{"release": id}}, &r)
	if err != nil {
		return nil, err
	}
	return fromHK(&r), nil
}

// RemoveProcessType removes a process type's image from the app, as
// `heroku container:rm` does: PATCH /apps/{app}/formation/{type} with
// {"docker_image": null} under the docker-releases Accept. It is the only
// way: a type left out of a later release keeps its old image. Removing
// "release" stops Heroku from running the old release command before every
// later release. A type the app lacks is a not_found error whose Resource
// is not "app".
func (c *Client) RemoveProcessType(ctx context.Context, app, processType string) error {
	if !processTypeRE.MatchString(processType) {
		return &Error{Kind: KindInvalidParams, ID: "invalid_params", Message: fmt.Sprintf("process type %q is not valid", processType)}
	}
	return c.do(ctx, request{op: "formation.remove", method: "PATCH",
		path:   "/apps/" + url.PathEscape(app) + "/formation/" + url.PathEscape(processType),
		body:   map[string]any{"docker_image": nil},
		accept: acceptDockerReleases}, nil)
}

// Formation is one process type's dynos.
type Formation struct {
	Type     string
	Quantity int
	Size     string
}

// Formation lists the app's process types.
func (c *Client) Formation(ctx context.Context, app string) ([]Formation, error) {
	var list []hk.Formation
	err := c.do(ctx, request{op: "formation.list", method: "GET",
		path: "/apps/" + url.PathEscape(app) + "/formation"}, &list)
	if err != nil {
		return nil, err
	}
	out := make([]Formation, 0, len(list))
	for _, f := range list {
		out = append(out, Formation{Type: f.Type, Quantity: f.Quantity, Size: f.Size})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Type < out[j].Type })
	return out, nil
}

// ScaleFormation sets quantity and size of the given process types in one
// batch PATCH (no docker images). A negative Quantity or an empty Size
// leaves that value as it is.
func (c *Client) ScaleFormation(ctx context.Context, app string, updates []Formation) error {
	if len(updates) == 0 {
		return nil
	}
	var opts hk.FormationBatchUpdateOpts
	opts.Updates = make([]struct {
		Quantity *int    `json:"quantity,omitempty" url:"quantity,omitempty,key"`
		Size     *string `json:"size,omitempty" url:"size,omitempty,key"`
		Type     string  `json:"type" url:"type,key"`
	}, len(updates))
	for i, u := range updates {
		if !processTypeRE.MatchString(u.Type) {
			return &Error{Kind: KindInvalidParams, ID: "invalid_params", Message: fmt.Sprintf("process type %q is not valid", u.Type)}
		}
		opts.Updates[i].Type = u.Type
		if u.Quantity >= 0 {
			q := u.Quantity
			opts.Updates[i].Quantity = &q
		}
		if u.Size != "" {
			s := u.Size
			opts.Updates[i].Size = &s
		}
	}
	return c.do(ctx, request{op: "formation.batch-update", method: "PATCH",
		path: "/apps/" + url.PathEscape(app) + "/formation", body: opts}, nil)
}

// AccountRateLimit asks Heroku for the account's remaining tokens. Heroku
// does not count this call, and neither does the client-side limiter.
func (c *Client) AccountRateLimit(ctx context.Context) (int, error) {
	var rl hk.RateLimit
	if err := c.do(ctx, request{op: "account.rate-limits", method: "GET", path: "/account/rate-limits", free: true}, &rl); err != nil {
		return 0, err
	}
	return rl.Remaining, nil
}

// ConfigVars reads the app's config vars (GET /apps/{app}/config-vars).
// The values are secrets: callers compare them and drop them, never log or
// store them.
func (c *Client) ConfigVars(ctx context.Context, app string) (map[string]string, error) {
	var vars map[string]string
	err := c.do(ctx, request{op: "config-vars.info", method: "GET",
		path: "/apps/" + url.PathEscape(app) + "/config-vars"}, &vars)
	if err != nil {
		return nil, err
	}
	return vars, nil
}

// UpdateConfigVars sets config vars and removes those whose value is nil
// (PATCH /apps/{app}/config-vars, null deletes; heroku.md "Platform API in
// general"). Heroku makes one release for the request, which runs the
// release phase when the formation holds a release image (heroku.md
// "Release phase"). The answer (every var of the app, values included) is
// not decoded.
func (c *Client) UpdateConfigVars(ctx context.Context, app string, vars map[string]*string) error {
	if len(vars) == 0 {
		return &Error{Kind: KindInvalidParams, ID: "invalid_params", Message: "no config vars to update"}
	}
	return c.do(ctx, request{op: "config-vars.update", method: "PATCH",
		path: "/apps/" + url.PathEscape(app) + "/config-vars", body: vars}, nil)
}
