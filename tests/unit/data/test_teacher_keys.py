"""The teacher's (and the V-PRISM LLM's) cache key covers the server where one is set, and
keeps the keys of the default endpoint."""

from value_drifts.backends.cache import request_key
from value_drifts.data.teacher import BACKEND_KIND, OpenAITeacherSettings, teacher_request_key

MESSAGES = [{"role": "user", "content": "Say something about abortion."}]


def test_the_teacher_key_covers_the_endpoint():
    default = OpenAITeacherSettings(model="qwen")
    here = OpenAITeacherSettings(model="qwen", base_url="http://127.0.0.1:8000/v1")
    there = OpenAITeacherSettings(model="qwen", base_url="http://127.0.0.1:9000/v1")
    keys = {teacher_request_key(MESSAGES, s) for s in (default, here, there)}
    assert len(keys) == 3
    canonical = '[{"content":"Say something about abortion.","role":"user"}]'
    assert teacher_request_key(MESSAGES, default) == request_key(
        canonical, "qwen", default.decoding_params(), BACKEND_KIND)
