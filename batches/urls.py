app_name = "batches"

urlpatterns = []
