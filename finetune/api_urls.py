from rest_framework.routers import SimpleRouter

from finetune.api import DatasetViewSet, FineTuneJobViewSet

router = SimpleRouter()
router.register("finetune/datasets", DatasetViewSet, basename="finetune-dataset")
router.register("finetune/jobs", FineTuneJobViewSet, basename="finetune-job")
urlpatterns = router.urls
