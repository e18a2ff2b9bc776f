-- Resumes reconciliation.
obj.spec.suspend = false
return obj
