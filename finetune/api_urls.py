from rest_framework.routers import SimpleRouter

from finetune.api import FineTuneJobViewSet

router = SimpleRouter()
router.register("finetune/jobs", FineTuneJobViewSet, basename="finetune-job")
urlpatterns = router.urls
