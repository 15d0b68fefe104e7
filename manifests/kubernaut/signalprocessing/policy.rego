# kprov's classification policy for the SignalProcessing E2E environment: the value of key
# `policy.rego` in ConfigMap `signalprocessing-policy` (profiles/signalprocessing.yaml,
# config.configMaps), mounted whole at /etc/signalprocessing/policies.
#
# Reproduces the classification facts of the policy kubernaut's E2E setup applies as a Go
# string literal in deploySignalProcessingPolicies
# (test/infrastructure/signalprocessing_e2e_hybrid.go:596-721, policy at :599-694, kubernaut
# d5a4a8709); kubernaut has no file for it. Same package, same rule names the controller
# queries (data.signalprocessing.{environment,severity,priority,labels,cluster},
# pkg/signalprocessing/evaluator/evaluator.go:44-52), same results for every input; the
# lookup tables and the helper are kprov's own layout.
package signalprocessing

import rego.v1

# A namespace label's value, when the label is set to something other than "".
namespace_label(key) := value if {
	value := input.namespace.labels[key]
	value != ""
}

# ---- environment (BR-SP-051..053) ----------------------------------------------------------
# kubernaut.ai/environment decides whenever it is present (lower-cased; present but empty
# classifies nothing). Only when it is absent does the plain `env` label count, and then only
# for the three environments listed here.

default environment := {"environment": "unknown", "source": "default"}

environment := {"environment": lower(value), "source": "namespace-labels"} if {
	value := namespace_label("kubernaut.ai/environment")
}

environment := {"environment": value, "source": "namespace-labels"} if {
	not input.namespace.labels["kubernaut.ai/environment"]
	value := input.namespace.labels.env
	value in {"production", "staging", "development"}
}

# ---- severity (BR-SP-105) ------------------------------------------------------------------
# The signal's severity, case-insensitively, through this alias table; anything else is
# "unknown".

severity_aliases := {
	"critical": "critical", "sev1": "critical", "p0": "critical",
	"high": "high", "sev2": "high", "p2": "high",
	"medium": "warning", "warning": "warning", "sev3": "warning",
	"low": "info", "info": "info", "sev4": "info",
}

default severity := "unknown"

severity := severity_aliases[lower(input.signal.severity)]

# ---- priority (BR-SP-070) ------------------------------------------------------------------
# production: by severity (critical, high, warning; info and unknown fall through to P3);
# staging: critical is P1, every other severity P2; any other environment: P3.

production_priorities := {
	"critical": {"priority": "P0", "policy_name": "production-critical"},
	"high": {"priority": "P1", "policy_name": "production-high"},
	"warning": {"priority": "P1", "policy_name": "production-warning"},
}

default priority := {"priority": "P3", "policy_name": "default"}

priority := production_priorities[severity] if environment.environment == "production"

priority := {"priority": "P1", "policy_name": "staging-critical"} if {
	environment.environment == "staging"
	severity == "critical"
}

priority := {"priority": "P2", "policy_name": "staging-any"} if {
	environment.environment == "staging"
	severity != "critical"
}

# ---- custom labels (BR-SP-102) -------------------------------------------------------------
# team and tier from kubernaut.ai/team and kubernaut.ai/tier; team alone only when the tier
# label is absent altogether (an empty tier label yields no labels).

default labels := {}

labels := {"team": [team], "tier": [tier]} if {
	team := namespace_label("kubernaut.ai/team")
	tier := namespace_label("kubernaut.ai/tier")
}

labels := {"team": [team]} if {
	team := namespace_label("kubernaut.ai/team")
	not input.namespace.labels["kubernaut.ai/tier"]
}

# ---- fleet cluster (BR-FLEET-003) ----------------------------------------------------------
# The registered cluster's `environment` label when non-empty; no default (undefined means
# "no classification").

cluster := input.cluster.labels.environment if input.cluster.labels.environment != ""
