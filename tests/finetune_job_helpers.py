"""Fixtures for the fine-tuning tests: a tiny sentence-transformers model built
on the fly (2 layers, 32 dimensions, MiniLM's tokenizer: a training step takes
milliseconds), small datasets written directly as TrainingPair rows, and a
guard evaluation set over a few processed documents."""
from __future__ import annotations

import random
import shutil

import pytest

from finetune.models import DatasetStatus, Split, TrainingDataset, TrainingPair

TOPICS = [
    ("nghỉ phép năm", "Nhân viên được nghỉ phép năm 12 ngày có hưởng lương, đăng ký trên cổng nhân sự."),
    ("cài đặt VPN", "Tải phần mềm VPN client và đăng nhập bằng tài khoản SSO của công ty."),
    ("đổi mật khẩu", "Mở trang cài đặt, chọn bảo mật và đổi mật khẩu mỗi 90 ngày."),
    ("bảo hiểm xã hội", "Công ty đóng BHXH cho nhân viên chính thức từ tháng đầu tiên làm việc."),
    ("công tác phí", "Chi phí công tác được thanh toán theo đề nghị có phê duyệt của trưởng phòng."),
    ("sao lưu dữ liệu", "Dữ liệu máy chủ được sao lưu hằng đêm và giữ trong 30 ngày."),
    ("đào tạo an toàn", "Đào tạo an toàn lao động bắt buộc cho nhân viên mới trong tuần đầu tiên."),
    ("hỗ trợ kỹ thuật", "Liên hệ IT helpdesk qua số máy lẻ 1234 khi gặp sự cố máy tính."),
    ("báo cáo tài chính", "Báo cáo tài chính quý được nộp cho ban giám đốc trước ngày 15."),
    ("hợp đồng khách hàng", "Hợp đồng khách hàng phải được phòng pháp chế rà soát trước khi ký."),
    ("kiểm tra định kỳ", "Thiết bị phòng cháy được kiểm tra định kỳ mỗi sáu tháng."),
    ("tuyển dụng", "Yêu cầu tuyển dụng gửi phòng nhân sự kèm bản mô tả công việc."),
]
ASKS = ["{} như thế nào?", "quy định về {}", "hỏi về {} ở công ty", "{} là gì", "cách làm {}"]


@pytest.fixture(scope="session")
def tiny_model_path(tmp_path_factory, minilm_path):
    import torch
    from sentence_transformers import SentenceTransformer, models
    from transformers import AutoTokenizer, BertConfig, BertModel

    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("tiny-bert")
    hf = folder / "hf"
    tokenizer = AutoTokenizer.from_pretrained(minilm_path, local_files_only=True)
    config = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=2,
                        num_attention_heads=2, intermediate_size=64, max_position_embeddings=128)
    BertModel(config).save_pretrained(hf)
    tokenizer.save_pretrained(hf)
    transformer = models.Transformer(str(hf), max_seq_length=64)
    model = SentenceTransformer(modules=[transformer, models.Pooling(32, "mean"), models.Normalize()], device="cpu")
    out = folder / "model"
    model.save(str(out))
    shutil.rmtree(hf)
    return str(out)


def make_dataset(name: str = "pairs", *, repeats: int = 3, eval_topics: int = 4, status=DatasetStatus.READY,
                 negatives: bool = False) -> TrainingDataset:
    """Pairs about TOPICS: the last `eval_topics` topics are the eval split (split by document)."""
    from django.utils import timezone

    dataset = TrainingDataset.objects.create(name=name, status=status, content_hash=f"hash-{name}",
                                             built_at=timezone.now() if status == DatasetStatus.READY else None)
    rnd = random.Random(0)
    rows = []
    for t, (topic, passage) in enumerate(TOPICS):
        split = Split.EVAL if t >= len(TOPICS) - eval_topics else Split.TRAIN
        for r in range(repeats):
            negative = TOPICS[(t + 1) % len(TOPICS)][1] if negatives else ""
            rows.append(TrainingPair(dataset=dataset, query=ASKS[r % len(ASKS)].format(topic),
                                     positive=f"{passage} (mục {r})" if split == Split.TRAIN else passage,
                                     negative=negative, split=split, source="pairs", doc_key=f"doc-{t}"))
    rnd.shuffle(rows)
    TrainingPair.objects.bulk_create(rows)
    dataset.counts = {"pairs": len(rows)}
    dataset.save(update_fields=["counts"])
    return dataset


@pytest.fixture
def guard_set(db):
    """Three processed documents and an evaluation set whose items name their chunks."""
    from documents.services.processing import process_document
    from search.evaluation import sets
    from tests import factories as f

    codes = []
    for i, (topic, passage) in enumerate(TOPICS[:3]):
        doc = f.document(0, text=f"# {topic.capitalize()}\n\n{passage}\n", status="pending", code=f"G{i}")
        assert process_document(doc.pk) == "ready"
        codes.append(doc.code)
    records = [{"query": f"hỏi về {topic}", "doc_id": code, "_line": n}
               for n, ((topic, _), code) in enumerate(zip(TOPICS[:3], codes), start=1)]
    return sets.import_records("guard", records, replace=True)


def trainer(username: str):
    """Staff with the fine-tuning job permissions (what the API asks for, as the admin does)."""
    from django.contrib.auth.models import Permission

    from tests import factories as f

    user = f.user(username, is_staff=True)
    user.user_permissions.add(*Permission.objects.filter(content_type__app_label="finetune",
                                                         codename__endswith="_finetunejob"))
    return user
