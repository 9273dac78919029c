"""The evaluation models move to their own app (search.evaluation, label
`evaluation`). Only Django's model state changes: the tables stay where they
are, under their old names (evaluation/0001 takes them over)."""

from django.db import migrations


class Migration(migrations.Migration):

    dependencies = [
        ('search', '0006_relevance_floors_client_key'),
    ]

    operations = [migrations.SeparateDatabaseAndState(state_operations=[
        migrations.RemoveField(
            model_name='evaluationqueryresult',
            name='item',
        ),
        migrations.RemoveField(
            model_name='evaluationqueryresult',
            name='run',
        ),
        migrations.RemoveField(
            model_name='evaluationrun',
            name='as_user',
        ),
        migrations.RemoveField(
            model_name='evaluationrun',
            name='created_by',
        ),
        migrations.RemoveField(
            model_name='evaluationrun',
            name='evaluation_set',
        ),
        migrations.RemoveField(
            model_name='evaluationrun',
            name='space',
        ),
        migrations.RemoveField(
            model_name='evaluationset',
            name='created_by',
        ),
        migrations.DeleteModel(
            name='EvaluationItem',
        ),
        migrations.DeleteModel(
            name='EvaluationQueryResult',
        ),
        migrations.DeleteModel(
            name='EvaluationRun',
        ),
        migrations.DeleteModel(
            name='EvaluationSet',
        ),
    ])]
