package engine

import (
	"errors"
	"fmt"
)

// Role is what an actor may do.
type Role string

// Roles, from least to most powerful.
const (
	RoleViewer   Role = "viewer"   // sees everything, acts on nothing
	RoleOperator Role = "operator" // pause, resume, step, promote, roll back, abort, ack
	RoleOwner    Role = "owner"    // also starts deploys and breaks locks
)

func (r Role) rank() int {
	switch r {
	case RoleOperator:
		return 1
	case RoleOwner:
		return 2
	default:
		return 0
	}
}

// ParseRole parses a role name.
func ParseRole(s string) (Role, error) {
	switch Role(s) {
	case RoleViewer, RoleOperator, RoleOwner:
		return Role(s), nil
	}
	return "", fmt.Errorf("unknown role %q (want viewer, operator or owner)", s)
}

// Actor is who issued a command: a local user, an SSH user, or the
// automatic rollback trigger.
type Actor struct {
	Name        string `json:"name"`
	Role        Role   `json:"role"`
	Fingerprint string `json:"fingerprint,omitempty"`
	Via         string `json:"via,omitempty"` // cli | tui | ssh | auto
}

// AutoActor is the actor of automatic decisions (SLO gates, the rollback trigger).
var AutoActor = Actor{Name: "auto", Role: RoleOperator, Via: "auto"}

// CommandKind names an operator command.
type CommandKind string

// Operator commands.
const (
	CmdPause      CommandKind = "pause"
	CmdResume     CommandKind = "resume"
	CmdPromote    CommandKind = "promote"
	CmdPromoteAll CommandKind = "promote-all"
	CmdSetWeight  CommandKind = "set-weight"
	CmdStepUp     CommandKind = "step-up"
	CmdStepDown   CommandKind = "step-down"
	CmdRollback   CommandKind = "rollback"
	CmdAbort      CommandKind = "abort"
	CmdAck        CommandKind = "ack"
	CmdApprove    CommandKind = "approve"
	// CmdDeploy starts a deploy run. Runs never take it (Engine.Deploy
	// starts one); Check answers it, so that a cockpit knows whether a
	// deploy can start.
	CmdDeploy CommandKind = "deploy"
	// CmdNote journals what happened outside the engine during the run
	// (Reason), e.g. a fault a training lab put a host in.
	CmdNote CommandKind = "note"
)

// Command is an operator's instruction to a run.
type Command struct {
	Kind   CommandKind
	Actor  Actor
	To     string  // rollback target release ("" = the run's previous)
	Weight float64 // set-weight: percent of traffic, more than 0 and at most 100
	Item   string  // ack: checklist item id
	Reason string
}

// ErrNotAllowed is returned (wrapped) when an actor's role does not permit a command.
var ErrNotAllowed = errors.New("not allowed")

// ErrNoRun is returned when a command arrives while no run is active.
var ErrNoRun = errors.New("no run in progress")

// ErrRunFinishing is returned (wrapped) for a command that arrives after
// the run's outcome is decided, while it only probes traffic for its
// report: nothing is left to pause or roll back within the run.
var ErrRunFinishing = errors.New("run is finishing")

// Authorize checks that the actor's role permits the command. The engine
// calls it for every command; hiding keys in an interface is not protection.
func Authorize(a Actor, k CommandKind) error {
	need := RoleOperator
	if a.Role.rank() < need.rank() {
		return fmt.Errorf("%s (%s) may not %s: %w (needs role %s)", a.Name, roleName(a.Role), k, ErrNotAllowed, need)
	}
	return nil
}

// AuthorizeOwner checks that the actor may start deploys and break locks.
func AuthorizeOwner(a Actor, what string) error {
	if a.Role.rank() < RoleOwner.rank() {
		return fmt.Errorf("%s (%s) may not %s: %w (needs role owner)", a.Name, roleName(a.Role), what, ErrNotAllowed)
	}
	return nil
}

func roleName(r Role) string {
	if r == "" {
		return string(RoleViewer)
	}
	return string(r)
}
