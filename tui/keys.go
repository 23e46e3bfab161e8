package tui

import (
	"fmt"
	"strings"

	"charm.land/bubbles/v2/key"
)

// Action names something the operator can do from the cockpit. The names
// are the keys of the `keys:` mapping in the config file.
type Action string

// Actions, in the order the key bar and the help list them.
const (
	ActPause      Action = "pause"       // pause / resume the run
	ActRollback   Action = "rollback"    // roll back (confirmed)
	ActAbort      Action = "abort"       // abort the run (confirmed)
	ActStepUp     Action = "step_up"     // canary: next weight step
	ActStepDown   Action = "step_down"   // canary: previous weight step
	ActPromote    Action = "promote"     // go to the next step now
	ActPromoteAll Action = "promote_all" // go straight to 100 % (confirmed)
	ActSetWeight  Action = "set_weight"  // canary: set the weight by number
	ActApprove    Action = "approve"     // approve another operator's proposed promotion (four eyes)
	ActAck        Action = "ack"         // acknowledge the selected checklist item
	ActDeploy     Action = "deploy"      // between runs: start a new deploy
	ActDeployBad  Action = "deploy_bad"  // between runs: deploy a release with the scenario's fault (demo only, confirmed)
	ActHistory    Action = "history"     // the release history; roll back to a chosen release
	ActFilter     Action = "filter"      // filter the fleet by host name or phase
	ActDetails    Action = "details"     // open the selected host's details
	ActNextPane   Action = "next_pane"   // move focus to the next pane
	ActUp         Action = "up"
	ActDown       Action = "down"
	ActPageUp     Action = "page_up"
	ActPageDown   Action = "page_down"
	ActHelp       Action = "help"
	ActQuit       Action = "quit"
	ActConfirm    Action = "confirm" // in a confirmation dialog
	ActCancel     Action = "cancel"  // close a dialog, the help or the details; clear the filter
)

// Actions lists every action name a config file may bind.
func Actions() []Action {
	out := make([]Action, len(bindings))
	for i, ai := range bindings {
		out[i] = ai.act
	}
	return out
}

// KeyMap holds the cockpit's key bindings, one bubbles key.Binding per
// action. ctrl+c always quits and cannot be rebound.
type KeyMap struct {
	Pause, Rollback, Abort                key.Binding
	StepUp, StepDown, Promote, PromoteAll key.Binding
	SetWeight                             key.Binding
	Approve, Ack, Deploy, DeployBad       key.Binding
	History, Filter, Details, NextPane    key.Binding
	Up, Down, PageUp, PageDown            key.Binding
	Help, Quit, Confirm, Cancel           key.Binding
}

// DefaultKeyMap returns the default bindings (k9s / lazygit habits).
// Promote all is ctrl+p: P (shift+p) is promote to the next step.
func DefaultKeyMap() KeyMap {
	b := func(a Action, keys ...string) key.Binding {
		return key.NewBinding(key.WithKeys(keys...), key.WithHelp(displayKey(keys), bindingOf(a).desc))
	}
	return KeyMap{
		Pause:      b(ActPause, "p"),
		Rollback:   b(ActRollback, "r"),
		Abort:      b(ActAbort, "a"),
		StepUp:     b(ActStepUp, "+", "="),
		StepDown:   b(ActStepDown, "-"),
		Promote:    b(ActPromote, "P"),
		PromoteAll: b(ActPromoteAll, "ctrl+p"),
		SetWeight:  b(ActSetWeight, "w"),
		Approve:    b(ActApprove, "A"),
		Ack:        b(ActAck, "space"),
		Deploy:     b(ActDeploy, "d"),
		DeployBad:  b(ActDeployBad, "D"),
		History:    b(ActHistory, "h"),
		Filter:     b(ActFilter, "/"),
		Details:    b(ActDetails, "enter"),
		NextPane:   b(ActNextPane, "tab"),
		Up:         b(ActUp, "k", "up"),
		Down:       b(ActDown, "j", "down"),
		PageUp:     b(ActPageUp, "pgup", "ctrl+u"),
		PageDown:   b(ActPageDown, "pgdown", "ctrl+d"),
		Help:       b(ActHelp, "?"),
		Quit:       b(ActQuit, "q"),
		Confirm:    b(ActConfirm, "y", "enter"),
		Cancel:     b(ActCancel, "esc", "n"),
	}
}

// Binding returns the binding of an action (nil for an unknown action).
func (k *KeyMap) Binding(a Action) *key.Binding {
	switch a {
	case ActPause:
		return &k.Pause
	case ActRollback:
		return &k.Rollback
	case ActAbort:
		return &k.Abort
	case ActStepUp:
		return &k.StepUp
	case ActStepDown:
		return &k.StepDown
	case ActPromote:
		return &k.Promote
	case ActPromoteAll:
		return &k.PromoteAll
	case ActSetWeight:
		return &k.SetWeight
	case ActApprove:
		return &k.Approve
	case ActAck:
		return &k.Ack
	case ActDeploy:
		return &k.Deploy
	case ActDeployBad:
		return &k.DeployBad
	case ActHistory:
		return &k.History
	case ActFilter:
		return &k.Filter
	case ActDetails:
		return &k.Details
	case ActNextPane:
		return &k.NextPane
	case ActUp:
		return &k.Up
	case ActDown:
		return &k.Down
	case ActPageUp:
		return &k.PageUp
	case ActPageDown:
		return &k.PageDown
	case ActHelp:
		return &k.Help
	case ActQuit:
		return &k.Quit
	case ActConfirm:
		return &k.Confirm
	case ActCancel:
		return &k.Cancel
	}
	return nil
}

// Rebind sets the keys of an action; no keys unbinds it.
func (k *KeyMap) Rebind(a Action, keys ...string) error {
	b := k.Binding(a)
	if b == nil {
		return fmt.Errorf("unknown action %q (want one of %s)", a, actionList())
	}
	for _, s := range keys {
		if s == "ctrl+c" {
			return fmt.Errorf("%s: ctrl+c always quits and cannot be bound", a)
		}
		if strings.TrimSpace(s) == "" {
			return fmt.Errorf("%s: empty key name", a)
		}
	}
	if len(keys) == 0 {
		b.Unbind()
		return nil
	}
	b.SetKeys(keys...)
	b.SetHelp(displayKey(keys), bindingOf(a).desc)
	b.SetEnabled(true)
	return nil
}

// Conflicts reports keys bound to two actions of the main screen (dialog
// keys — confirm, cancel — only act inside dialogs and may overlap).
func (k *KeyMap) Conflicts() error {
	seen := map[string]Action{}
	var errs []string
	for _, ai := range bindings {
		if ai.act == ActConfirm || ai.act == ActCancel {
			continue
		}
		for _, s := range k.Binding(ai.act).Keys() {
			if prev, ok := seen[s]; ok {
				errs = append(errs, fmt.Sprintf("key %q is bound to both %s and %s", s, prev, ai.act))
				continue
			}
			seen[s] = ai.act
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("%s", strings.Join(errs, "; "))
	}
	return nil
}

// matchAction returns the main-screen action a key press triggers.
func (k *KeyMap) matchAction(keyStr string) (Action, bool) {
	for _, ai := range bindings {
		if ai.act == ActConfirm || ai.act == ActCancel {
			continue
		}
		b := k.Binding(ai.act)
		if !b.Enabled() {
			continue
		}
		for _, s := range b.Keys() {
			if s == keyStr {
				return ai.act, true
			}
		}
	}
	return "", false
}

func (k *KeyMap) is(a Action, keyStr string) bool {
	b := k.Binding(a)
	if b == nil || !b.Enabled() {
		return false
	}
	for _, s := range b.Keys() {
		if s == keyStr {
			return true
		}
	}
	return false
}

// keyLabel is how an action's first key is shown ("" when unbound).
func (k *KeyMap) keyLabel(a Action) string {
	b := k.Binding(a)
	if b == nil || len(b.Keys()) == 0 {
		return ""
	}
	return b.Help().Key
}

func displayKey(keys []string) string {
	if len(keys) == 0 {
		return ""
	}
	return keys[0]
}

func actionList() string {
	var names []string
	for _, ai := range bindings {
		names = append(names, string(ai.act))
	}
	return strings.Join(names, ", ")
}
