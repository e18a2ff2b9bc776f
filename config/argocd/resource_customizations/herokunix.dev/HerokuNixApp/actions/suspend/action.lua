-- Stops reconciliation; what runs on Heroku is left as it is.
obj.spec.suspend = true
return obj
