# AIAnalysis approval policy for the E2E environment (kprov's own policy, mounted as
# ConfigMap aianalysis-policies key approval.rego at /etc/aianalysis/policies).
#
# Same decisions as the inline E2E policy of createInlineRegoPolicyConfigMap (kubernaut
# d5a4a8709, test/infrastructure/aianalysis_e2e.go:978-1023), which exists only as a Go
# string: production needs manual approval, any other environment is auto-approved; the
# reason is the highest-scoring factor that applies (warnings 70, failed detections 60,
# production 40), "Auto-approved" when none does. The controller queries
# data.aianalysis.approval and reads require_approval and reason
# (pkg/aianalysis/rego/evaluator.go:261, :354-355).
package aianalysis.approval

import rego.v1

production if lower(input.environment) == "production"

default require_approval := false

require_approval if production

risk_factors contains {"score": 40, "reason": "Production environment requires manual approval"} if production

risk_factors contains {"score": 60, "reason": "Data quality issues detected in production environment"} if {
	production
	count(input.failed_detections) > 0
}

risk_factors contains {"score": 70, "reason": "Data quality warnings in production environment"} if {
	production
	count(input.warnings) > 0
}

max_risk_score := max({f.score | some f in risk_factors}) if count(risk_factors) > 0

default reason := "Auto-approved"

reason := f.reason if {
	some f in risk_factors
	f.score == max_risk_score
}
