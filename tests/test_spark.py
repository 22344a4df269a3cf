from workbench.spark import _shuffle_partitions, get_spark


def test_local_session_is_configured(spark):
    conf = spark.conf
    assert conf.get("spark.sql.session.timeZone") == "UTC"
    assert conf.get("spark.sql.execution.arrow.pyspark.enabled") == "true"
    assert conf.get("spark.sql.shuffle.partitions") == "4"
    assert spark.sparkContext.master == "local[2]"
    assert spark.range(1000).selectExpr("sum(id) AS s").first().s == 499500


def test_get_spark_reuses_the_active_session(spark, repo_settings):
    assert get_spark(settings=repo_settings) is spark


def test_shuffle_partitions_follow_the_master(repo_settings):
    assert _shuffle_partitions(repo_settings.with_overrides(spark_master="local[3]")) == 6
    assert _shuffle_partitions(repo_settings.with_overrides(spark_master="spark://h:7077")) == 200
    assert (
        _shuffle_partitions(repo_settings.with_overrides(spark_master="spark://h:7077", spark_shuffle_partitions=32))
        == 32
    )


def test_app_name_names_the_user(spark, repo_settings):
    from workbench.identity import current_identity

    assert "workbench" in spark.sparkContext.appName
    assert current_identity(repo_settings).user
