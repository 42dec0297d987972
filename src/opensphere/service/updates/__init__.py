"""Images, OS feeds, deployments, device update status and the tenants' TUF repositories."""
