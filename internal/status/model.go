package status

import (
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"math/big"
	"slices"
	"strings"
	"time"

	"gatehouse/internal/fault"
)

// Component states, with the value names of the widely used status API.
const (
	Operational = "operational"
	Degraded    = "degraded_performance"
	Partial     = "partial_outage"
	Major       = "major_outage"
	Maintenance = "under_maintenance"
)

// ComponentStates lists every component state, best first.
var ComponentStates = []string{Operational, Degraded, Partial, Major, Maintenance}

// Incident impacts.
const (
	ImpactNone     = "none"
	ImpactMinor    = "minor"
	ImpactMajor    = "major"
	ImpactCritical = "critical"
)

// Impacts lists the impacts of an incident, least first.
var Impacts = []string{ImpactNone, ImpactMinor, ImpactMajor, ImpactCritical}

// Incident statuses.
const (
	Investigating = "investigating"
	Identified    = "identified"
	Monitoring    = "monitoring"
	Resolved      = "resolved"
	Postmortem    = "postmortem"
)

// IncidentStatuses are the statuses an incident update may carry.
var IncidentStatuses = []string{Investigating, Identified, Monitoring, Resolved}

// Maintenance statuses.
const (
	Scheduled  = "scheduled"
	InProgress = "in_progress"
	Verifying  = "verifying"
	Completed  = "completed"
)

// MaintenanceStatuses are the statuses of a scheduled maintenance.
var MaintenanceStatuses = []string{Scheduled, InProgress, Verifying, Completed}

// Input limits.
const (
	MaxNameBytes       = 200
	MaxBodyBytes       = 16 << 10
	MaxPostmortemBytes = 256 << 10
)

// Update is one entry of an incident's or maintenance's timeline.
type Update struct {
	ID        string    `json:"id"`
	Status    string    `json:"status"`
	Body      string    `json:"body"`
	CreatedAt time.Time `json:"created_at"`
	// Affected records component state changes announced with the update.
	Affected []AffectedComponent `json:"affected,omitempty"`
	// Internal updates are machine-written (the first update of an
	// automatically opened draft, which names pools): the operator sees
	// them through the admin API, readers never (pages, feeds, JSON API,
	// webhooks, export).
	Internal bool `json:"internal,omitempty"`
}

// AffectedComponent is a component whose state an update announced.
type AffectedComponent struct {
	Code      string `json:"code"`
	Name      string `json:"name"`
	OldStatus string `json:"old_status"`
	NewStatus string `json:"new_status"`
}

// Incident is an unplanned event, with its timeline (oldest first).
type Incident struct {
	ID     string `json:"id"`
	Name   string `json:"name"`
	Status string `json:"status"`
	Impact string `json:"impact"`
	// Draft incidents are not published: opened automatically when a
	// component goes to major outage, for an operator to publish.
	Draft        bool       `json:"draft,omitempty"`
	Auto         bool       `json:"auto,omitempty"`
	Components   []string   `json:"components"`
	CreatedAt    time.Time  `json:"created_at"`
	UpdatedAt    time.Time  `json:"updated_at"`
	MonitoringAt *time.Time `json:"monitoring_at,omitempty"`
	ResolvedAt   *time.Time `json:"resolved_at,omitempty"`
	Updates      []Update   `json:"updates"`
	// Postmortem is the published post-incident report in Markdown.
	Postmortem   string     `json:"postmortem,omitempty"`
	PostmortemAt *time.Time `json:"postmortem_at,omitempty"`
}

// internal reports whether the i-th update is for operators only: marked
// so, or the first update of an automatically opened incident (those
// written before updates were marked).
func (in *Incident) internal(i int) bool {
	return in.Updates[i].Internal || (in.Auto && i == 0)
}

// public returns the incident as readers see it: without its internal
// updates. It returns in itself when there are none.
func (in *Incident) public() *Incident {
	keep := -1
	for i := range in.Updates {
		if in.internal(i) {
			keep = i
			break
		}
	}
	if keep < 0 {
		return in
	}
	cp := *in
	cp.Updates = make([]Update, 0, len(in.Updates)-1)
	for i, u := range in.Updates {
		if !in.internal(i) {
			cp.Updates = append(cp.Updates, u)
		}
	}
	return &cp
}

// Unresolved reports whether the incident is still open.
func (in *Incident) Unresolved() bool { return in.Status != Resolved && in.Status != Postmortem }

// Latest returns the newest update.
func (in *Incident) Latest() Update {
	if len(in.Updates) == 0 {
		return Update{}
	}
	return in.Updates[len(in.Updates)-1]
}

// MaintenanceWindow is a scheduled maintenance.
type MaintenanceWindow struct {
	ID             string     `json:"id"`
	Name           string     `json:"name"`
	Status         string     `json:"status"`
	Components     []string   `json:"components"`
	ScheduledFor   time.Time  `json:"scheduled_for"`
	ScheduledUntil time.Time  `json:"scheduled_until"`
	CreatedAt      time.Time  `json:"created_at"`
	UpdatedAt      time.Time  `json:"updated_at"`
	StartedAt      *time.Time `json:"started_at,omitempty"`
	CompletedAt    *time.Time `json:"completed_at,omitempty"`
	Updates        []Update   `json:"updates"`
	// Drain, if set, is drained while the window runs (maintdrain.go);
	// DrainState is pending, refused, drained or restored, DrainError
	// why the drain was refused or failed.
	Drain      *MaintenanceDrain `json:"drain,omitempty"`
	DrainState string            `json:"drain_state,omitempty"`
	DrainError string            `json:"drain_error,omitempty"`
}

// Latest returns the newest update.
func (m *MaintenanceWindow) Latest() Update {
	if len(m.Updates) == 0 {
		return Update{}
	}
	return m.Updates[len(m.Updates)-1]
}

// activeAt reports whether the maintenance puts its components under
// maintenance at t: inside its window (or started early) and not completed.
func (m *MaintenanceWindow) activeAt(t time.Time) bool {
	if m.Status == Completed {
		return false
	}
	if m.Status == InProgress || m.Status == Verifying {
		return true
	}
	return !t.Before(m.ScheduledFor) && t.Before(m.ScheduledUntil)
}

// Override is an operator-set component state that wins over health until
// cleared.
type Override struct {
	Component string    `json:"component"`
	Status    string    `json:"status"`
	Reason    string    `json:"reason,omitempty"`
	SetAt     time.Time `json:"set_at"`
}

// InputError is bad input from an operator: it names the field and what is
// wrong with it. Nothing was changed.
type InputError struct {
	Field string
	Msg   string
}

func (e *InputError) Error() string { return e.Field + ": " + e.Msg }

// Is makes an InputError a fault.ErrInvalid.
func (e *InputError) Is(target error) bool { return target == fault.ErrInvalid }

// FieldName is the field (fault.Field).
func (e *InputError) FieldName() string { return e.Field }

func inputErr(field, format string, args ...any) error {
	return &InputError{Field: field, Msg: fmt.Sprintf(format, args...)}
}

// NotFoundError is an incident, maintenance, component or subscriber that
// does not exist.
type NotFoundError struct {
	Kind, ID string
}

func (e *NotFoundError) Error() string { return fmt.Sprintf("%s %q: not found", e.Kind, e.ID) }

// Is makes a NotFoundError a fault.ErrNotFound.
func (e *NotFoundError) Is(target error) bool { return target == fault.ErrNotFound }

const idAlphabet = "0123456789abcdefghijklmnopqrstuvwxyz"

// newID returns a random 12-character lowercase id, as the status API uses.
func newID() string {
	b := make([]byte, 12)
	max := big.NewInt(int64(len(idAlphabet)))
	for i := range b {
		n, err := rand.Int(rand.Reader, max)
		if err != nil {
			panic(err) // crypto/rand does not fail on supported platforms
		}
		b[i] = idAlphabet[n.Int64()]
	}
	return string(b)
}

// stableID derives a 12-character lowercase id from a name, so a
// configured component keeps its id across restarts and nodes.
func stableID(kind, name string) string {
	sum := sha256.Sum256([]byte(kind + "\x00" + name))
	b := make([]byte, 12)
	for i := range b {
		b[i] = idAlphabet[int(sum[i])%len(idAlphabet)]
	}
	return string(b)
}

// validID reports whether s looks like an id this package issues.
func validID(s string) bool {
	if len(s) != 12 {
		return false
	}
	for _, c := range []byte(s) {
		if !strings.ContainsRune(idAlphabet, rune(c)) {
			return false
		}
	}
	return true
}

// rank orders component states from best to worst; maintenance counts as
// operational for the banner.
func rank(s string) int {
	switch s {
	case Degraded:
		return 1
	case Partial:
		return 2
	case Major:
		return 3
	}
	return 0
}

func impactRank(s string) int { return slices.Index(Impacts, s) }

// stateOf maps the share of healthy members to a component state. A
// component without members reports operational (nothing to measure).
func stateOf(healthy, total int) string {
	switch {
	case total == 0 || healthy == total:
		return Operational
	case healthy == 0:
		return Major
	case healthy*2 >= total:
		return Degraded
	}
	return Partial
}

// StatusText is the human wording of a component, incident or maintenance
// state or an impact.
func StatusText(s string) string {
	switch s {
	case Operational:
		return "Operational"
	case Degraded:
		return "Degraded performance"
	case Partial:
		return "Partial outage"
	case Major:
		return "Major outage"
	case Maintenance:
		return "Under maintenance"
	case Investigating:
		return "Investigating"
	case Identified:
		return "Identified"
	case Monitoring:
		return "Monitoring"
	case Resolved:
		return "Resolved"
	case Postmortem:
		return "Postmortem"
	case Scheduled:
		return "Scheduled"
	case InProgress:
		return "In progress"
	case Verifying:
		return "Verifying"
	case Completed:
		return "Completed"
	case ImpactNone:
		return "None"
	case ImpactMinor:
		return "Minor"
	case ImpactMajor:
		return "Major"
	case ImpactCritical:
		return "Critical"
	}
	return s
}

// indicatorText is the banner wording of an overall indicator.
func indicatorText(ind string) string {
	switch ind {
	case ImpactMinor:
		return "Minor Service Outage"
	case ImpactMajor:
		return "Partial System Outage"
	case ImpactCritical:
		return "Major System Outage"
	case "maintenance":
		return "Service Under Maintenance"
	}
	return "All Systems Operational"
}
