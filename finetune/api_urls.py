from rest_framework.routers import SimpleRouter

from finetune.api import DatasetViewSet

router = SimpleRouter()
router.register("finetune/datasets", DatasetViewSet, basename="finetune-dataset")
urlpatterns = router.urls
